"""Threads of Packyard's own (counts, heartbeats, the sweeper) take no process signals.

The kernel hands a signal sent to a process to any thread that does not block it. uWSGI's
threads block them all, so in a web process the one that took ``SIGTERM`` was the metrics'
flush thread: uWSGI's handler then ended the process from there, and Python's shutdown,
waiting on threads from a thread that is not the main one, hung until ``SIGKILL``.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from app.background import start_daemon_thread
from app.domain.counters import BatchCounter
from app.metrics.tally import Tally

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP}


def blocked_signals(thread: threading.Thread) -> set[int]:
    """The signals ``thread`` blocks, from the kernel's view of it."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    mask = int(
        next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16
    )
    return {number for number in range(1, 65) if mask & (1 << (number - 1))}


def test_a_background_thread_blocks_the_stop_signals_and_its_starter_does_not():
    seen: list[set[int]] = []
    thread = start_daemon_thread(
        lambda: seen.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])), "t"
    )
    thread.join()
    assert thread.daemon and thread.name == "t"
    assert set(seen[0]) >= STOP_SIGNALS
    assert not STOP_SIGNALS & set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_the_metrics_flush_thread_takes_no_stop_signal():
    tally = Tally()
    tally.add(Counter("c", "c", registry=CollectorRegistry()))
    assert tally._flusher is not None
    assert blocked_signals(tally._flusher) >= STOP_SIGNALS


def test_the_download_count_thread_takes_no_stop_signal():
    counter = BatchCounter(
        lambda session, counts: None, lambda batch: None, 60, "counts-under-test"
    )
    counter.add(1)
    [thread] = [t for t in threading.enumerate() if t.name == "counts-under-test"]
    assert blocked_signals(thread) >= STOP_SIGNALS


def test_nothing_else_starts_a_thread_of_its_own():
    """Every thread goes through ``start_daemon_thread`` (the supervisor, which imports
    only the standard library and handles its signals in Python, aside)."""
    root = Path(__file__).resolve().parent.parent
    starters = [
        path.relative_to(root).as_posix()
        for folder in ("app", "workers", "plugins")
        for path in (root / folder).rglob("*.py")
        if "threading.Thread(" in path.read_text()
    ]
    assert sorted(starters) == ["app/background.py", "app/supervisor.py"]
