"""The embedded broker: kombu's SQLAlchemy transport on a SQLite file, polled briskly.

Registered as the ``packyard-sqla`` transport (URL ``packyard-sqla+sqlite:///...``): a
URL's scheme picks the transport class, so a subclass is only used under its own name.
"""

from kombu.transport import TRANSPORT_ALIASES, sqlalchemy

ALIAS = "packyard-sqla"
# kombu's virtual transports sleep this long when every queue is empty (default 1 s):
# it is the latency an upload waits before the embedded worker sees its task.
POLLING_INTERVAL = 0.05


class EmbeddedTransport(sqlalchemy.Transport):  # type: ignore[misc]
    polling_interval = POLLING_INTERVAL


TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:EmbeddedTransport")
