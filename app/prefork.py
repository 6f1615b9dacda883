"""What uWSGI's master imports before it forks the workers (``--shared-import``).

The app's modules are loaded once and their pages shared by every worker (copy-on-write).
``gc.freeze()`` then moves every object loaded so far out of the collector's generations:
a collection in a worker would otherwise write to each object's header, and so copy every
shared page into that worker.
"""

import gc

import app  # noqa: F401  (the import is the point)

gc.freeze()
