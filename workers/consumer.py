"""The worker's broker consumer: Celery's, back on a broker that returns within seconds.

kombu waits 2, 4, 6 ... up to 30 s between two attempts to reconnect, so after an outage
of a minute a worker could sit idle for half a minute with the broker back. This one tries
every few seconds, for as long as it takes (``broker_connection_max_retries`` is None: a
worker that gave up would need a restart).
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer as CeleryConsumer

RECONNECT_INTERVAL_MAX = 3.0  # seconds between two attempts, once the first few failed


class Consumer(CeleryConsumer):  # type: ignore[misc]
    """Installed by the ``worker_consumer`` setting (``workers.celery_app``)."""

    def ensure_connected(self, conn: Any) -> Any:
        # Celery passes no intervals, so kombu's defaults apply: ours take their place.
        conn.ensure_connection = functools.partial(
            conn.ensure_connection,
            interval_start=1.0,
            interval_step=1.0,
            interval_max=RECONNECT_INTERVAL_MAX,
        )
        return super().ensure_connected(conn)
