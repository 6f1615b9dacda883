"""URL converters.

GitLab's ``:id`` is a number or a URL-encoded full path (``team%2Fsub%2Flib``). WSGI
servers decode ``%2F`` before routing, so a ref arrives as ``team/sub/lib``: the ``ref``
converter takes several segments but stops before a reserved word that starts a sub-resource
(``packages``, ``members``...), which namespace paths may therefore not use.
"""

from __future__ import annotations

import re
from typing import Any

from werkzeug.routing import BaseConverter, IntegerConverter, Map

from app.domain.namespaces import MAX_ID, RESERVED_PATHS

_RESERVED = "|".join(re.escape(word) for word in sorted(RESERVED_PATHS))


class RefConverter(BaseConverter):
    regex = rf"[^/]+(?:/(?!(?:{_RESERVED})(?:/|$))[^/]+)*?"
    part_isolating = False
    weight = 200


class IdConverter(IntegerConverter):
    """``<int:...>`` for row ids: a number beyond the id columns' range is no route (404),
    not a database error."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)
