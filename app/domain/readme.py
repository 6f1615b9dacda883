"""A package's long description as safe HTML, rendered as PyPI renders it.

readme_renderer (PyPI's own) picks Markdown, reStructuredText or plain text from the
``Description-Content-Type`` and sanitises the HTML (no scripts, styles or event
handlers; links get ``rel="nofollow"``).  A description without a content type is
reStructuredText, and one that does not parse is shown as plain text, as on PyPI.
"""

from __future__ import annotations

import io
from functools import lru_cache

MAX_DESCRIPTION = 1024 * 1024  # longer descriptions are cut before rendering
CACHED_DESCRIPTION = 64 * 1024  # shorter ones are rendered once per process


def content_type_of(value: str | None) -> tuple[str, dict[str, str]]:
    """``text/markdown; charset=UTF-8; variant=GFM`` -> ("text/markdown", {...})."""
    main, *params = (value or "").split(";")
    options = {}
    for param in params:
        key, _, val = param.partition("=")
        options[key.strip().lower()] = val.strip().strip('"')
    return main.strip().lower(), options


def render_description(text: str | None, content_type: str | None) -> str | None:
    """Sanitised HTML, or None when there is no description."""
    if not text or not text.strip() or text.strip() == "UNKNOWN":
        return None
    if len(text) <= CACHED_DESCRIPTION:
        return _cached(text, content_type)
    return _render(text[:MAX_DESCRIPTION], content_type)


@lru_cache(maxsize=128)  # at most 128 x 64 KiB of text, and the HTML of each
def _cached(text: str, content_type: str | None) -> str:
    return _render(text, content_type)


def _render(text: str, content_type: str | None) -> str:
    # Imported on first use: readme_renderer and docutils add 12 MiB to every process
    # that imports them, and only project pages in the browser need them.
    import readme_renderer.markdown
    import readme_renderer.rst
    import readme_renderer.txt

    kind, options = content_type_of(content_type)
    html: str | None = None
    if kind == "text/markdown":
        html = readme_renderer.markdown.render(text, variant=options.get("variant", "GFM"))
    elif kind in ("", "text/x-rst"):
        html = readme_renderer.rst.render(text, stream=io.StringIO())
    return html if html is not None else readme_renderer.txt.render(text)
