"""Prefork pool children in a process group of their own.

A stop signal sent to the worker's whole process group (``kill -TERM -PGID``,
supervisord's ``stopasgroup``, a terminal's Ctrl-C) would otherwise reach every child as
well as the main process. An idle child waits for work holding the pool's queue lock; if
the signal ends it there, the main process's shutdown waits on that lock until it is
killed (billiard's ``Pool._help_stuff_finish``). In a group of its own a child hears only
the main process, whose warm shutdown lets its task finish and then ends it. A child
still dies with the main process: Celery sets its parent-death signal to SIGKILL.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from celery.signals import worker_process_init


@worker_process_init.connect
def _own_process_group(**_: Any) -> None:
    os.setpgid(0, 0)
    # A background group writing to a terminal set to ``tostop`` would be stopped.
    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
