"""Jinja filters and globals of the pages: sizes, times, durations, links, the visitor."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.domain.identity import Identity
from app.domain.tokens import as_utc
from app.web.ui import bp
from app.web.ui.common import viewer


@bp.app_template_filter("filesize")
def filesize(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} bytes"  # pragma: no cover


@bp.app_template_filter("when")
def when(moment: datetime | None) -> str:
    """``2026-12-03 10:01 UTC``; the exact time goes in a ``<time datetime>``."""
    moment = as_utc(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else ""


@bp.app_template_filter("isotime")
def isotime(moment: datetime | None) -> str:
    moment = as_utc(moment)
    return moment.isoformat() if moment else ""


@bp.app_template_filter("seconds")
def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    return f"{int(value // 60)} min {int(value % 60)} s"


@bp.app_template_filter("as_list")
def as_list(value: Any) -> list[str]:
    """Metadata fields may hold one string or a list of them."""
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


@bp.app_template_filter("project_urls")
def project_urls(meta: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(label, URL, is_link) from ``Project-URL: Label, URL`` and ``Home-page``.

    Only http(s) URLs become links; anything else is shown as text."""
    pairs = []
    if home := meta.get("home_page"):
        pairs.append(("Homepage", str(home)))
    for entry in as_list(meta.get("project_urls")):
        label, _, url = entry.partition(",")
        pairs.append((label.strip() or "URL", url.strip() or label.strip()))
    return [(label, url, url.lower().startswith(("http://", "https://"))) for label, url in pairs]


@bp.app_template_global("viewer")
def _viewer() -> Identity:
    """The visitor, for the navigation bar."""
    return viewer()
