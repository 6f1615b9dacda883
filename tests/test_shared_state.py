"""No local state: processes with data directories of their own, sharing only the
database, agree on everything a client may carry from one to the other."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from app import create_app
from app.domain.accounts import create_user
from app.extensions import db
from tests.test_ui import PASSWORD, sign_in


def web_process(data_dir: Path, database_url: str) -> Flask:
    return create_app(
        {"DATA_DIR": str(data_dir), "DATABASE_URL": database_url, "LOAD_ENTRYPOINT_PLUGINS": False}
    )


def test_a_session_from_one_web_process_is_valid_at_another(tmp_path, database_url):
    first, second = (web_process(tmp_path / name, database_url) for name in ("one", "two"))
    with first.app_context():
        create_user(db.session, "ada", "ada@example.com", PASSWORD, False)
    client = first.test_client()
    assert sign_in(client, "ada").status_code == 303
    cookie = client.get_cookie("packyard_session")
    assert cookie is not None
    other = second.test_client()
    other.set_cookie("packyard_session", cookie.value)
    page = other.get("/-/profile/personal_access_tokens")
    assert page.status_code == 200, page.location  # not sent to sign in again
    for app in (first, second):
        with app.app_context():
            db.engine.dispose()
