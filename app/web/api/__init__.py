"""GitLab-shaped REST API under /api/v4."""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v4")

from app.web.api import groups, projects, users  # noqa: E402,F401  (registers routes)
