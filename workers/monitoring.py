"""What the dashboard asks the broker and the workers: who is online, how deep the queues are.

Broker-specific knowledge stays here: Redis workers answer Celery's ``inspect``
broadcast; the embedded broker has no broadcast, so its workers are read from their
heartbeat files (``workers.heartbeat``).  Queue depth comes from a passive queue
declaration, which both transports answer (Redis ``LLEN``, SQL ``COUNT`` of visible
messages).  Every function degrades to "unavailable" instead of raising.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError

from app.config import EMBEDDED_BROKER
from workers.heartbeat import INTERVAL, heartbeat_dir

INSPECT_TIMEOUT = 1.0
CACHE_SECONDS = 5.0  # the page polls every 2 s; inspect waits its whole timeout
STALE_AFTER = 4 * INTERVAL
_cache: dict[str, tuple[float, WorkerReport]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    concurrency: int | None
    pid: int | None = None
    seen_seconds_ago: float | None = None


@dataclass(frozen=True)
class WorkerReport:
    available: bool
    source: str  # "inspect", "heartbeat" or "" when unavailable
    workers: list[WorkerInfo] = field(default_factory=list)
    note: str = ""


def workers_online(celery: Celery, config: dict[str, Any]) -> WorkerReport:
    """The workers online now and their concurrency (cached for a few seconds)."""
    key = str(celery.conf.broker_url)
    with _lock:
        cached = _cache.get(key)
        if cached and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
    if config["BROKER_URL"] == EMBEDDED_BROKER:
        report = _from_heartbeats(config["DATA_DIR"])
    else:
        report = _from_inspect(celery)
    with _lock:
        _cache[key] = (time.monotonic(), report)
    return report


def _from_inspect(celery: Celery) -> WorkerReport:
    try:
        stats = celery.control.inspect(timeout=INSPECT_TIMEOUT).stats() or {}
    except Exception as exc:  # the broker is down or refuses broadcasts
        return WorkerReport(False, "", note=f"the broker did not answer: {type(exc).__name__}")
    workers = [
        WorkerInfo(name, (info.get("pool") or {}).get("max-concurrency"), info.get("pid"))
        for name, info in sorted(stats.items())
    ]
    return WorkerReport(True, "inspect", workers)


def _from_heartbeats(data_dir: str) -> WorkerReport:
    now = time.time()
    workers = []
    for path in sorted(heartbeat_dir(data_dir).glob("*.json")):
        try:
            beat = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        age = now - float(beat.get("at", 0))
        if age <= STALE_AFTER:
            workers.append(
                WorkerInfo(beat["hostname"], beat.get("concurrency"), beat.get("pid"), age)
            )
    return WorkerReport(True, "heartbeat", workers, note="embedded broker: worker heartbeats")


def queue_depths(celery: Celery, queues: tuple[str, ...] | None = None) -> dict[str, int | None]:
    """Messages waiting in each queue; None when the broker cannot be asked."""
    names = queues or tuple(sorted(celery.amqp.queues)) or (str(celery.conf.task_default_queue),)
    depths: dict[str, int | None] = dict.fromkeys(names)
    try:
        with celery.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            channel = connection.default_channel
            for name in names:
                depths[name] = _depth(channel, name)
    except Exception:  # the broker is down: the page says "unavailable"
        pass
    return depths


def _depth(channel: Any, name: str) -> int:
    try:
        return int(channel.queue_declare(queue=name, passive=True).message_count)
    except ChannelError:  # never declared, or (Redis) empty and so absent
        return 0
