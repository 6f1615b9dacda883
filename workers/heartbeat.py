"""Worker heartbeats: the ``packyard_worker_heartbeat_timestamp_seconds`` gauge (every
broker), and files on disk for the dashboard when the broker cannot broadcast.

Celery's ``inspect``/``ping`` travel on a fanout exchange, which the embedded broker
(kombu's SQLAlchemy transport) does not have.  Each worker started with the embedded
broker therefore writes ``$DATA_DIR/heartbeats/<hostname>.json`` every few seconds and
removes it when it stops; ``workers.monitoring`` reads them.  With Redis the
dashboard asks the workers directly and these files are not written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from celery.signals import worker_ready, worker_shutdown

from app.background import start_daemon_thread
from app.config import EMBEDDED_BROKER
from app.metrics import WORKER_HEARTBEAT

log = logging.getLogger(__name__)
INTERVAL = 5.0
_stop = threading.Event()
_written: list[Path] = []


def heartbeat_dir(data_dir: str) -> Path:
    return Path(data_dir) / "heartbeats"


def beat(path: Path, record: dict[str, Any]) -> None:
    """Write one heartbeat atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**record, "at": time.time()}))
    os.replace(tmp, path)


def _run(path: Path | None, record: dict[str, Any]) -> None:
    gauge = WORKER_HEARTBEAT.labels(record["hostname"])
    while True:
        gauge.set(time.time())
        try:
            if path is not None:
                beat(path, record)
        except OSError:
            log.exception("could not write the worker heartbeat %s", path)
        if _stop.wait(INTERVAL):
            return


@worker_ready.connect
def _start(sender: Any, **_: Any) -> None:
    config = sender.app.flask_app.config
    hostname = str(sender.hostname)
    controller = getattr(sender, "controller", None)
    record = {
        "hostname": hostname,
        "pid": os.getpid(),
        "concurrency": getattr(controller, "concurrency", None)
        or sender.app.conf.worker_concurrency,
        "queues": sorted(q.name for q in sender.app.amqp.queues.consume_from.values()),
    }
    path = None
    if config["BROKER_URL"] == EMBEDDED_BROKER:  # Redis workers answer inspect instead
        path = heartbeat_dir(config["DATA_DIR"]) / (
            re.sub(r"[^A-Za-z0-9_.@-]", "_", hostname) + ".json"
        )
        _written.append(path)
    _stop.clear()
    start_daemon_thread(_run, "packyard-heartbeat", path, record)


@worker_shutdown.connect
def _shutdown(**_: Any) -> None:
    _stop.set()
    for path in _written:
        path.unlink(missing_ok=True)
    _written.clear()
