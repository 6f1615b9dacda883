"""GitLab-shaped REST API under /api/v4."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v4")

from app.web.api import (  # noqa: E402,F401  (registers routes)
    audit,
    groups,
    hooks,
    members,
    openapi,
    packages,
    projects,
    protection,
    reserved_names,
    tokens,
    upstream,
    users,
)
from app.web.api.common import reject_nul_bytes  # noqa: E402

bp.before_request(reject_nul_bytes)
