"""Where the counts live and how ``/-/metrics`` reads them.

Multiprocess mode (``prometheus_client``'s, as documented for gunicorn and uWSGI): each
process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``; a scrape, in any
process, sums them. ``packyard serve`` sets the directory (``$DATA_DIR/metrics`` unless
given) and, at start, deletes the files of processes that have ended (a running one, a
separate worker, keeps its own), for its uWSGI processes and its worker alike; a process
that ends marks its files dead so its live gauges drop out. Without the variable (tests,
a single process) the process's own registry is read.

Gauges of the instance's state (files by state, queue depth) are read at scrape time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    start_http_server,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.metrics.tally import TALLY
from app.models import PackageFile

ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def use_directory(path: Path, *, clean: bool) -> None:
    """Count in files under ``path`` from now on, in this process and its children."""
    path.mkdir(parents=True, exist_ok=True)
    if clean:
        remove_ended(path)
    os.environ[ENV] = str(path)
    values.ValueClass = values.MultiProcessValue()


def remove_ended(path: Path) -> None:
    """Delete the files of processes that have ended: a previous run's counts, which
    prometheus_client says to wipe before a start. A process still running here (a
    separate ``packyard worker``, a serve being replaced) keeps its files: it still
    writes to them, and its counts would vanish from every scrape."""
    for stale in path.glob("*.db"):
        pid = stale.stem.rpartition("_")[2]  # counter_<pid>, gauge_livesum_<pid>, ...
        # This process has counted nothing yet: a file with its PID is a previous run's
        # (a container's PIDs repeat from one start to the next).
        if not (pid.isdigit() and int(pid) != os.getpid() and _running(int(pid))):
            stale.unlink(missing_ok=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running all the same
        pass
    return True


def default_directory(data_dir: str) -> Path:
    return Path(os.environ.get(ENV) or Path(data_dir) / "metrics")


def mark_dead(pid: int | None = None) -> None:
    """This process (or ``pid``) has ended: its live gauges no longer count."""
    if os.environ.get(ENV):
        multiprocess.mark_process_dead(pid or os.getpid())


class InstanceCollector:
    """Gauges read from the database and the broker at scrape time."""

    def __init__(self, session: Session, queue_depths: dict[str, int | None]) -> None:
        self.session, self.queue_depths = session, queue_depths

    def collect(self) -> Iterator[Metric]:
        files = GaugeMetricFamily(
            "packyard_package_files", "Package files by processing state.", labels=["state"]
        )
        sizes = GaugeMetricFamily(
            "packyard_package_bytes", "Stored bytes by processing state.", labels=["state"]
        )
        counts = self.session.execute(
            select(PackageFile.state, func.count(), func.coalesce(func.sum(PackageFile.size), 0))
            .group_by(PackageFile.state)
        )  # fmt: skip
        for state, count, size in counts:
            files.add_metric([state], count)
            sizes.add_metric([state], size)
        depth = GaugeMetricFamily(
            "packyard_queue_depth", "Tasks waiting in each broker queue.", labels=["queue"]
        )
        for queue, waiting in self.queue_depths.items():
            if waiting is not None:  # the broker could not be asked
                depth.add_metric([queue], waiting)
        yield from (files, sizes, depth)


def serve_metrics(host: str, port: int) -> None:
    """Every process's counts from this directory on ``http://host:port/metrics``, from a
    thread (``packyard worker --metrics-port``: a worker with no web process beside it)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, host, registry)


def scrape(instance: InstanceCollector) -> bytes:
    """The exposition text: every process's counts, then the instance's gauges."""
    TALLY.flush()  # this process's latest; the others' are at most FLUSH_SECONDS late
    if os.environ.get(ENV):
        processes: Any = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    state = CollectorRegistry()
    state.register(instance)
    return bytes(generate_latest(processes) + generate_latest(state))
