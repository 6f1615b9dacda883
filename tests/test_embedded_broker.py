"""The embedded broker's channel: idle polls cost no query, consumed messages are deleted."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from queue import Empty

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


def test_polls_briskly_only_while_messages_flow(tmp_path: Path, monkeypatch):
    """After a delivery the worker may be waiting for its one task to finish, not for the
    broker: kombu sleeps a polling interval either way, so that interval must be short."""
    with Connection(broker_url(tmp_path)) as connection:
        transport = connection.transport
        assert transport.polling_interval == embedded.POLLING_INTERVAL  # idle
        queue = connection.SimpleQueue("tasks")
        queue.put({"n": 1})
        queue.get(block=True, timeout=5).ack()  # delivered through the transport
        assert transport.polling_interval == embedded.BUSY_POLLING_INTERVAL
        monkeypatch.setattr(embedded, "BUSY_FOR", 0.0)
        assert transport.polling_interval == embedded.POLLING_INTERVAL
