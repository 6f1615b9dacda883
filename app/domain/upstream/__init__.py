"""The upstream index: which names may go there (``policy``), and the pull-through cache:
its pages (``pages`` reads them, ``index`` keeps them), its files (``files`` records them,
``download`` fetches them, ``hits`` counts their use), what operators see and purge
(``records``), all over HTTP through ``client``."""
