"""The embedded broker's channel: idle polls cost no query, consumed messages are deleted."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from queue import Empty

import pytest
from celery.worker import state as worker_state
from kombu import Connection
from sqlalchemy import event

import workers.embedded as embedded


def broker_url(tmp_path: Path) -> str:
    return f"{embedded.ALIAS}+sqlite:///{tmp_path}/broker.db"


def poll(queue: object) -> object | None:
    try:
        return queue.get(block=False)  # type: ignore[attr-defined]
    except Empty:
        return None


def test_idle_polls_run_no_query_until_a_message_arrives(tmp_path: Path):
    with Connection(broker_url(tmp_path)) as consumer, Connection(broker_url(tmp_path)) as producer:
        queue = consumer.SimpleQueue("tasks")
        assert poll(queue) is None
        engine = queue.channel._open()[0]
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        for _ in range(20):
            assert poll(queue) is None
        assert statements == []  # the file did not change: no lock, no query
        producer.SimpleQueue("tasks").put({"n": 1})
        message = poll(queue)
        assert message is not None and message.payload == {"n": 1}
        message.ack()
        assert statements


def test_consumed_messages_are_deleted_while_idle(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(embedded, "PURGE_CONSUMED_EVERY", 0.0)
    with Connection(broker_url(tmp_path)) as connection:
        queue = connection.SimpleQueue("tasks")
        for n in range(3):
            queue.put({"n": n})
        received = [poll(queue) for _ in range(3)]
        assert [m.payload["n"] for m in received] == [0, 1, 2]  # type: ignore[union-attr]
        for message in received:
            message.ack()  # type: ignore[union-attr]
        queue.put({"n": 3})
        last = poll(queue)
        assert last.payload == {"n": 3}  # type: ignore[union-attr]
        last.ack()  # type: ignore[union-attr]  (unacked, it would be put back on close)
        assert poll(queue) is None  # idle: the consumed rows go
    with sqlite3.connect(tmp_path / "broker.db") as db:
        assert db.execute("SELECT count(*) FROM kombu_message").fetchone() == (0,)


def test_a_database_without_a_file_is_polled_as_kombu_does():
    with Connection(f"{embedded.ALIAS}+sqlite:///:memory:") as connection:
        queue = connection.SimpleQueue("tasks")
        assert poll(queue) is None
        queue.put({"n": 1})
        assert poll(queue).payload == {"n": 1}  # type: ignore[union-attr]


def test_polls_briskly_after_a_delivery_and_backs_off_while_the_queue_is_empty(tmp_path: Path):
    """After a delivery the worker may be waiting for its one task to finish, not for the
    broker: kombu sleeps a polling interval either way, so that interval must be short.
    Polls that find nothing double it, up to the idle interval, so that tasks trickling
    in (an upload every 50 ms) do not keep the worker polling every 2 ms in between."""
    with Connection(broker_url(tmp_path)) as connection:
        transport = connection.transport
        assert transport.polling_interval == embedded.POLLING_INTERVAL  # idle
        queue = connection.SimpleQueue("tasks")
        queue.put({"n": 1})
        queue.get(block=True, timeout=5).ack()  # delivered through the transport
        assert transport.polling_interval == embedded.BUSY_POLLING_INTERVAL
        intervals = []
        for _ in range(8):
            with pytest.raises(TimeoutError):
                connection.drain_events(timeout=0.001)
            intervals.append(transport.polling_interval)
        assert embedded.BUSY_POLLING_INTERVAL < intervals[0] < embedded.POLLING_INTERVAL
        assert intervals == sorted(intervals)
        assert intervals[-1] == embedded.POLLING_INTERVAL
        queue.put({"n": 2})
        queue.get(block=True, timeout=5).ack()
        assert transport.polling_interval == embedded.BUSY_POLLING_INTERVAL


def test_an_empty_poll_loop_sleeps_less_and_less_often(tmp_path: Path):
    """One drain_events call re-reads the interval before each sleep (kombu's reads it
    once): half a second without messages after a delivery is a handful of polls."""
    with Connection(broker_url(tmp_path)) as connection:
        queue = connection.SimpleQueue("tasks")
        queue.put({"n": 1})
        queue.get(block=True, timeout=5).ack()
        channel = queue.channel
        polls = []
        original = channel._get
        channel._get = lambda name: polls.append(name) or original(name)
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=0.5)
        assert 0 < len(polls) <= 20  # 2 ms throughout would be about 250


def test_a_wait_for_messages_ends_once_the_worker_is_told_to_stop(tmp_path: Path, monkeypatch):
    """Celery's loop for this transport checks for a stop between two waits of 2 s, and
    waits once more after it: without this, an idle embedded worker took 2 to 4 s to stop."""
    monkeypatch.setattr(worker_state, "should_stop", None)
    with Connection(broker_url(tmp_path)) as connection:
        connection.SimpleQueue("tasks")  # consuming, nothing to deliver
        stop = threading.Timer(0.2, lambda: setattr(worker_state, "should_stop", 0))
        stop.start()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=2.0)
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=2.0)  # the wait after the check: no wait at all
        assert time.monotonic() - started < 0.2


def test_task_events_are_sent_only_through_a_broker_that_can_broadcast_them(tmp_path: Path):
    """Task events go to a fanout exchange, for Flower: Redis broadcasts them. The
    embedded queue cannot, so there they would cost every send and every task a publish
    that no one receives."""
    from app import create_app

    def conf(broker: str | None) -> object:
        app = create_app({"DATA_DIR": str(tmp_path), "BROKER_URL": broker,
                          "LOAD_ENTRYPOINT_PLUGINS": False})  # fmt: skip
        return app.extensions["celery"].conf

    embedded_conf, redis_conf = conf(None), conf("redis://127.0.0.1:6379/15")
    assert not embedded_conf.task_send_sent_event
    assert not embedded_conf.worker_send_task_events
    assert redis_conf.task_send_sent_event and redis_conf.worker_send_task_events
