"""``TALLY``: the hot path's counts, added in memory, reach the metrics as if counted one
by one: after a flush, by its thread within a second, and not twice in a forked child."""

from __future__ import annotations

import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from app.metrics import LATENCY_BUCKETS
from app.metrics.tally import FLUSH_SECONDS, Tally

VALUES = (0.0001, 0.005, 0.0051, 0.3, 0.3, 7.0, 31.0, 0.0)


def _metrics() -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter("c", "a counter", ["family"], registry=registry)
    histogram = Histogram("h", "latency", ["family"], buckets=LATENCY_BUCKETS, registry=registry)
    return registry, counter, histogram


def _exposed(registry: CollectorRegistry) -> list[str]:
    return [
        line
        for line in generate_latest(registry).decode().splitlines()
        if "_created" not in line  # the time each was made
    ]


def test_a_flush_gives_the_figures_of_counting_one_by_one():
    direct, counter, histogram = _metrics()
    for value in VALUES:
        counter.labels("simple").inc()
        counter.labels("files").inc(value)
        histogram.labels("simple").observe(value)

    tallied, counter, histogram = _metrics()
    tally = Tally()
    for value in VALUES:
        tally.add(counter.labels("simple"))
        tally.add(counter.labels("files"), value)
        tally.observe(histogram.labels("simple"), value)
    assert tallied.get_sample_value("h_count", {"family": "simple"}) == 0  # until the flush
    tally.flush()
    assert _exposed(tallied) == _exposed(direct)
    tally.flush()  # nothing is moved twice
    assert _exposed(tallied) == _exposed(direct)


def test_the_thread_moves_the_counts_without_a_scrape():
    registry, counter, _ = _metrics()
    tally = Tally()
    tally.add(counter.labels("ops"), 3)
    deadline = time.monotonic() + FLUSH_SECONDS + 5
    while registry.get_sample_value("c_total", {"family": "ops"}) != 3:
        assert time.monotonic() < deadline, "not flushed"
        time.sleep(0.05)


def test_a_forked_child_does_not_count_its_parents_pending_figures():
    registry, counter, _ = _metrics()
    from app.metrics.tally import TALLY

    TALLY.add(counter.labels("ui"), 5)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports by its exit status
        # What the parent's thread moved before the fork is in the child's copy already.
        inherited = registry.get_sample_value("c_total", {"family": "ui"})
        TALLY.flush()
        counted = registry.get_sample_value("c_total", {"family": "ui"})
        os._exit(0 if counted == inherited else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    TALLY.flush()
    assert registry.get_sample_value("c_total", {"family": "ui"}) == 5
