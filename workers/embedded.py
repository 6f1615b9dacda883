"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polled briskly."""

from kombu.transport import sqlalchemy


class EmbeddedTransport(sqlalchemy.Transport):  # type: ignore[misc]
    polling_interval = 0.2
