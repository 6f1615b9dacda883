"""Password sign-in is throttled by username and by client address, in the database so
that every web process shares the count; a lockout answers 429 with ``Retry-After``, the
same for unknown users, and is audited once."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from app.extensions import db
from app.models import AuditEvent, SignInAttempt
from tests.conftest import _migrated_app

PASSWORD = "s3cret-pass"  # what tests.conftest.Registry.user sets
LOCKED = "Too many failed sign-in attempts."


@pytest.fixture
def limited(app, registry):
    """Small limits: 3 failures per username and 5 per address in 15 minutes."""
    app.config.update(SIGN_IN_FAILURES_PER_USER=3, SIGN_IN_FAILURES_PER_ADDRESS=5)
    registry.user("alice")
    registry.user("bob")
    return app


def prepared(app, address: str = "192.0.2.1") -> tuple[FlaskClient, str]:
    """A client from ``address`` with the sign-in form's CSRF token."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    page = client.get("/users/sign_in").get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, page
    return client, match.group(1)


def attempt(app, username: str, password: str = "wrong-password", address: str = "192.0.2.1"):
    client, csrf = prepared(app, address)
    return post(client, csrf, username, password)


def post(client: FlaskClient, csrf: str, username: str, password: str):
    form = {"username": username, "password": password, "csrf_token": csrf}
    return client.post("/users/sign_in", data=form)


def form(response) -> str:
    """The page without its CSRF token (each client has its own)."""
    return re.sub(r'name="csrf_token" value="[^"]+"', "", response.get_data(as_text=True))


def lock_events() -> list[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.action == "sign_in_locked").order_by(AuditEvent.id)
    return list(db.session.execute(query).scalars())


def test_the_right_password_after_many_wrong_ones_is_refused(app, registry):
    registry.user("alice")  # the defaults: 10 failures per username in 15 minutes
    answers = [attempt(app, "alice").status_code for _ in range(25)]
    assert answers == [401] * 10 + [429] * 15
    refused = attempt(app, "alice", PASSWORD)
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 900
    assert LOCKED in refused.get_data(as_text=True)


def test_unknown_users_get_the_same_answers(limited):
    for username, address in (("alice", "192.0.2.1"), ("ghost", "192.0.2.2")):
        assert [attempt(limited, username, address=address).status_code for _ in range(3)] == [
            401
        ] * 3
    known = attempt(limited, "alice", PASSWORD, "192.0.2.1")
    unknown = attempt(limited, "ghost", PASSWORD, "192.0.2.2")
    assert known.status_code == unknown.status_code == 429
    pages = [form(r).replace("alice", "ghost") for r in (known, unknown)]
    assert pages[0] == pages[1]
    retry = [int(r.headers["Retry-After"]) for r in (known, unknown)]
    assert abs(retry[0] - retry[1]) <= 1


def test_a_locked_username_is_locked_from_every_address_and_others_are_not(limited):
    for _ in range(3):
        attempt(limited, "alice", address="192.0.2.1")
    assert attempt(limited, "ALICE ", PASSWORD, address="198.51.100.7").status_code == 429
    assert attempt(limited, "bob", PASSWORD, address="198.51.100.7").status_code == 303


def test_an_address_is_locked_across_usernames(limited):
    for name in ("u1", "u2", "u3", "u4", "u5"):
        assert attempt(limited, name, address="192.0.2.1").status_code == 401
    assert attempt(limited, "alice", PASSWORD, address="192.0.2.1").status_code == 429
    assert attempt(limited, "alice", PASSWORD, address="192.0.2.2").status_code == 303


def test_signing_in_clears_the_usernames_failures(limited):
    for _ in range(2):
        attempt(limited, "alice")
    assert attempt(limited, "alice", PASSWORD, address="192.0.2.2").status_code == 303
    assert [attempt(limited, "alice", address="192.0.2.3").status_code for _ in range(4)] == [
        401,
        401,
        401,
        429,
    ]


def test_a_lock_ends_when_its_failures_leave_the_window(limited):
    for _ in range(3):
        attempt(limited, "alice")
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    db.session.execute(update(SignInAttempt).values(created_at=ten_minutes_ago))
    db.session.commit()
    refused = attempt(limited, "alice", PASSWORD)
    assert refused.status_code == 429
    assert 295 <= int(refused.headers["Retry-After"]) <= 301  # the 5 minutes left
    db.session.execute(
        update(SignInAttempt).values(created_at=ten_minutes_ago - timedelta(minutes=6))
    )
    db.session.commit()
    assert attempt(limited, "alice", PASSWORD).status_code == 303


def test_every_web_process_shares_the_count(limited, database_url, tmp_path):
    other_process = _migrated_app(tmp_path / "other", database_url)
    other_process.config.update(SIGN_IN_FAILURES_PER_USER=3)
    try:
        for _ in range(3):
            assert attempt(limited, "alice").status_code == 401
        assert attempt(other_process, "alice", PASSWORD).status_code == 429
    finally:
        with other_process.app_context():
            db.engine.dispose()


def test_concurrent_attempts_check_no_more_passwords_than_the_limit(limited):
    limited.config.update(SIGN_IN_FAILURES_PER_ADDRESS=100)
    clients = [prepared(limited, f"192.0.2.{n}") for n in range(12)]
    start = threading.Barrier(len(clients))
    answers: list[int] = []

    def run(client: FlaskClient, csrf: str) -> None:
        start.wait()
        answers.append(post(client, csrf, "alice", "wrong-password").status_code)

    threads = [threading.Thread(target=run, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    checked = answers.count(401)  # a burst may refuse even these: all count before any ends
    assert checked <= 3 and answers.count(429) == len(clients) - checked
    assert db.session.query(SignInAttempt).count() == checked  # refused ones are no failures


def test_lockouts_are_audited_once(limited, registry):
    for _ in range(5):
        attempt(limited, "alice", address="192.0.2.1")
    for _ in range(4):
        attempt(limited, "ghost", address="192.0.2.2")
    for name in ("u1", "u2", "u3", "u4", "u5", "u6"):
        attempt(limited, name, address="192.0.2.3")
    events = lock_events()
    assert [(e.entity_type, e.entity_path, e.details["limit"]) for e in events] == [
        ("User", "alice", "username"),
        ("Instance", None, "username"),
        ("Instance", None, "address"),
    ]
    assert events[0].details["address"] == "192.0.2.1"
    assert events[1].target_path == "ghost" and events[2].target_path == "192.0.2.3"
    root = registry.user("root", admin=True)
    listed = registry.client.get(
        "/api/v4/audit_events?entity_type=Instance",
        headers={"PRIVATE-TOKEN": registry.token(root)},
    )
    assert [e["event_name"] for e in listed.json] == ["sign_in_locked"] * 2


def test_a_zero_limit_turns_that_limit_off(limited):
    limited.config.update(SIGN_IN_FAILURES_PER_USER=0)
    for _ in range(4):
        assert attempt(limited, "alice", address="192.0.2.1").status_code == 401
    assert attempt(limited, "alice", PASSWORD, address="192.0.2.2").status_code == 303
