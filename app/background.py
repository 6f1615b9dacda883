"""Background threads of Packyard's own: daemons that take no process signals.

The kernel hands a signal sent to a process to any of its threads that does not block it.
uWSGI's threads block them all and its main thread handles them; a thread of ours that did
not would take a ``SIGTERM`` in their stead, and uWSGI's handler would then end the process
from that thread, where Python's shutdown hangs. Python runs its own signal handlers in the
main thread whichever thread took the signal, so blocking costs Celery and the rest nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any


def start_daemon_thread(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """Starts ``target(*args)`` in a daemon thread that blocks every signal it can."""
    # A new thread inherits its starter's mask: block here, start, and restore at once, so
    # that no signal reaches the thread before it could block them itself.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return thread
