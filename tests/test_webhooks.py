"""Webhooks: the API (projects and groups), signed GitLab-shaped package events, the
delivery log and resending; then a live ``packyard serve`` whose real worker delivers to
receivers on loopback that check signatures, fail twice, or hang."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from app.domain.access import DEVELOPER, MAINTAINER
from app.domain.webhooks import deliver
from app.extensions import db
from app.models import WebHook, WebHookEvent
from tests.dists import make_wheel
from tests.receiver import Receiver, receiver
from tests.services import LiveServer, packyard_env
from tests.test_manage_ui import post, signed_in
from tests.test_ui import text


def auth(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


def signed_by(token: str, body: bytes) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def world(registry):
    """A group with a subgroup holding a project; a maintainer and a developer."""
    group = registry.group("team")
    sub = registry.group("sub", parent=group)
    project = registry.project(sub, "lib")
    tokens = {}
    for role, level in (("maintainer", MAINTAINER), ("developer", DEVELOPER)):
        user = registry.user(role)
        registry.member(user, level, group=group)
        tokens[role] = registry.token(user)
    return {"group": group, "sub": sub, "project": project, "tokens": tokens}


def test_hooks_api_create_show_edit_delete(client, world):
    token = world["tokens"]["maintainer"]
    base = f"/api/v4/projects/{world['project'].id}/hooks"
    created = client.post(base, json={"url": "http://127.0.0.1:9/h", "token": "s3"},
                          headers=auth(token))  # fmt: skip
    assert created.status_code == 201, created.text
    hook = created.json
    assert hook["url"] == "http://127.0.0.1:9/h" and hook["package_events"] is True
    assert hook["project_id"] == world["project"].id and "token" not in hook
    assert hook["token_set"] is True
    listed = client.get(base, headers=auth(token))
    assert [h["id"] for h in listed.json] == [hook["id"]] and listed.headers["X-Total"] == "1"
    edited = client.put(f"{base}/{hook['id']}", json={"package_events": False},
                        headers=auth(token))  # fmt: skip
    assert edited.status_code == 200 and edited.json["package_events"] is False
    assert edited.json["url"] == hook["url"]
    assert client.get(f"{base}/{hook['id']}/events", headers=auth(token)).json == []
    assert client.delete(f"{base}/{hook['id']}", headers=auth(token)).status_code == 204
    assert client.get(f"{base}/{hook['id']}", headers=auth(token)).status_code == 404


@pytest.mark.parametrize(
    "payload", [{}, {"url": "ftp://example.com/x"}, {"url": "not a url"},
                {"url": "http://x/", "package_events": "maybe"}],
)  # fmt: skip
def test_invalid_hooks_are_400(client, world, payload):
    base = f"/api/v4/groups/{world['group'].id}/hooks"
    response = client.post(base, json=payload, headers=auth(world["tokens"]["maintainer"]))
    assert response.status_code == 400 and "message" in response.json


def test_hooks_need_maintainer(client, world):
    for kind, target in (("projects", world["project"]), ("groups", world["group"])):
        base = f"/api/v4/{kind}/{target.id}/hooks"
        developer = auth(world["tokens"]["developer"])
        assert client.get(base, headers=developer).status_code == 403
        post = client.post(base, json={"url": "http://127.0.0.1:9/"}, headers=developer)
        assert post.status_code == 403


def test_a_hook_of_another_project_is_404(client, registry, world):
    token = world["tokens"]["maintainer"]
    other = registry.project(world["sub"], "other")
    made = client.post(f"/api/v4/projects/{other.id}/hooks", json={"url": "http://h/"},
                       headers=auth(token)).json  # fmt: skip
    response = client.get(f"/api/v4/projects/{world['project'].id}/hooks/{made['id']}",
                          headers=auth(token))  # fmt: skip
    assert response.status_code == 404


def test_project_and_ancestor_group_hooks_hear_signed_package_events(client, registry, world):
    """Tasks run inline here (eager): the upload's events reach the receivers at once."""
    token = world["tokens"]["maintainer"]
    with receiver() as for_project, receiver() as for_group:
        for kind, target, hooked, secret in (
            ("projects", world["project"], for_project, "project-secret"),
            ("groups", world["group"], for_group, "group-secret"),
        ):
            hook = {"url": hooked.url, "token": secret}
            made = client.post(f"/api/v4/{kind}/{target.id}/hooks", json=hook, headers=auth(token))
            assert made.status_code == 201
        filename, content = make_wheel("demo", "1.0")
        assert registry.upload(world["project"], filename, content, token=token).status_code == 201
        received = {
            "project-secret": for_project.wait_for(2),
            "group-secret": for_group.wait_for(2),
        }
    for secret, items in received.items():
        assert [json.loads(i.body)["event_name"] for i in items] == [
            "package_published",
            "package_processed",
        ]
        for item in items:
            assert item.headers["X-Packyard-Event"] == "Package Hook"
            assert item.headers["X-Packyard-Signature-256"] == signed_by(secret, item.body)
            payload = json.loads(item.body)
            assert payload["object_kind"] == "package"
            assert payload["project"]["path_with_namespace"] == "team/sub/lib"
            assert payload["object_attributes"]["name"] == "demo"
            assert payload["package_files"][0]["file_name"] == filename
    published = json.loads(received["project-secret"][0].body)
    assert published["user"]["username"] == "maintainer"
    assert published["package_files"][0]["status"] == "processing"


def test_yank_and_delete_are_announced_and_logged(client, registry, world):
    token = world["tokens"]["maintainer"]
    project = world["project"]
    filename, content = make_wheel("demo", "1.0")
    assert registry.upload(project, filename, content, token=token).status_code == 201
    package_id = client.get(f"/api/v4/projects/{project.id}/packages", headers=auth(token)).json[0][
        "id"
    ]
    with receiver() as hooked:
        hook = client.post(f"/api/v4/projects/{project.id}/hooks", json={"url": hooked.url},
                           headers=auth(token)).json  # fmt: skip
        api = f"/api/v4/projects/{project.id}/packages/{package_id}"
        assert (
            client.post(api + "/yank", json={"reason": "bad"}, headers=auth(token)).status_code
            == 200
        )
        assert client.delete(api, headers=auth(token)).status_code == 204
        received = hooked.wait_for(2)
    yanked, deleted = (json.loads(r.body) for r in received)
    assert yanked["event_name"] == "package_yanked"
    assert yanked["object_attributes"]["yanked_reason"] == "bad"
    assert deleted["event_name"] == "package_deleted"
    assert deleted["object_attributes"]["status"] == "deleted"
    assert "X-Packyard-Signature-256" not in received[0].headers  # no token, no signature
    log = client.get(f"/api/v4/projects/{project.id}/hooks/{hook['id']}/events",
                     headers=auth(token)).json  # fmt: skip
    assert [e["trigger"] for e in log] == ["package_deleted", "package_yanked"]  # newest first
    assert all(e["state"] == "delivered" and e["response_status"] == 200 for e in log)
    assert log[0]["deliveries"][0]["execution_duration"] >= 0


def test_deleting_the_last_file_of_a_release_announces_its_deletion(client, registry, world):
    token = world["tokens"]["maintainer"]
    project = world["project"]
    filename, content = make_wheel("demo", "1.0")
    assert registry.upload(project, filename, content, token=token).status_code == 201
    api = f"/api/v4/projects/{project.id}/packages"
    package_id = client.get(api, headers=auth(token)).json[0]["id"]
    file_id = client.get(f"{api}/{package_id}/package_files", headers=auth(token)).json[0]["id"]
    with receiver() as hooked:
        client.post(f"/api/v4/projects/{project.id}/hooks", json={"url": hooked.url},
                    headers=auth(token))  # fmt: skip
        deleted = client.delete(f"{api}/{package_id}/package_files/{file_id}", headers=auth(token))
        assert deleted.status_code == 204
        payload = json.loads(hooked.wait_for(1)[0].body)
    assert payload["event_name"] == "package_deleted"
    assert payload["package_files"][0]["file_name"] == filename


def test_resend_posts_the_same_body_again(client, registry, world):
    token = world["tokens"]["maintainer"]
    group = world["group"]
    with receiver([500, 500, 500, 500, 500, 500, 500]) as hooked:
        registry.app.config.update(WEBHOOK_RETRIES=0)  # one try: the event fails at once
        hook = client.post(f"/api/v4/groups/{group.id}/hooks", json={"url": hooked.url},
                           headers=auth(token)).json  # fmt: skip
        hooks = f"/api/v4/groups/{group.id}/hooks/{hook['id']}"
        filename, content = make_wheel("demo", "1.0")
        registry.upload(world["project"], filename, content, token=token)
        events = client.get(hooks + "/events", headers=auth(token)).json
        assert {e["state"] for e in events} == {"failed"}
        assert events[0]["deliveries"][0]["error"].startswith("HTTP 500")
        hooked.answers = []  # the receiver is mended
        before = len(hooked.received)
        resent = client.post(f"{hooks}/events/{events[0]['id']}/resend", headers=auth(token))
        assert resent.status_code == 202
        again = hooked.wait_for(before + 1)[-1]
    assert json.loads(again.body) == events[0]["request_data"]  # the very body, again
    shown = client.get(hooks + "/events", headers=auth(token)).json[0]
    assert shown["state"] == "delivered" and len(shown["deliveries"]) == 2
    missing = client.post(f"{hooks}/events/999999/resend", headers=auth(token))
    assert missing.status_code == 404


def test_maintainers_manage_hooks_and_resend_in_the_pages(app, registry, world):
    registry.user("alice")  # not a member
    page = "/team/sub/lib/-/project_hooks"
    maintainer = signed_in(app, "maintainer")
    with receiver() as hooked:
        added = post(maintainer, page, {"url": hooked.url, "token": "t", "package_events": "1"},
                     page)  # fmt: skip
        assert added.status_code == 303
        hook = db.session.execute(select(WebHook)).scalar_one()
        filename, content = make_wheel("demo", "1.0")
        token = world["tokens"]["maintainer"]
        assert registry.upload(world["project"], filename, content, token=token).status_code == 201
        hooked.wait_for(2)
        shown = text(maintainer.get(page))
        assert hooked.url in shown and "package_published" in shown and "delivered" in shown
        event = db.session.execute(select(WebHookEvent)).scalars().first()
        resent = post(maintainer, f"{page}/{hook.id}/events/{event.id}/resend", page=page)
        assert resent.status_code == 303
        hooked.wait_for(3)
        edited = post(maintainer, f"{page}/{hook.id}", {"url": hooked.url + "2"}, page)
        assert edited.status_code == 303
        db.session.refresh(hook)
        assert hook.url.endswith("/hook2") and hook.token == "t"  # the secret was kept
        assert hook.package_events is False  # the box was left unchecked
    no_csrf = maintainer.post(f"{page}/{hook.id}/delete")
    assert no_csrf.status_code == 400
    assert post(maintainer, f"{page}/{hook.id}/delete", page=page).status_code == 303
    assert db.session.execute(select(WebHook)).first() is None
    developer = signed_in(app, "developer")
    assert developer.get(page).status_code == 403
    assert "Webhooks" not in text(developer.get("/team/sub/lib"))
    assert signed_in(app, "alice").get("/team/-/group_hooks").status_code == 404


# --- a live server and its real worker -------------------------------------------------


@pytest.fixture
def live(tmp_path: Path):
    env = packyard_env(tmp_path, WEBHOOK_TIMEOUT="2", WEBHOOK_RETRY_DELAY="1",
                       UPSTREAM_MODE="off")  # fmt: skip
    server = LiveServer(tmp_path, env, worker=True, web_workers=2)
    try:
        group = server.api("POST", "/groups", json={"name": "Hooks", "path": "hooks"}).json()
        fields = {"name": "Lib", "path": "lib", "namespace_id": group["id"]}
        project = server.api("POST", "/projects", json=fields).json()
        yield server, project
    finally:
        server.stop()


def upload(server: LiveServer, project: dict, version: str) -> float:
    """Upload a wheel; returns how long the upload took."""
    filename, content = make_wheel("demo", version)
    started = time.monotonic()
    response = requests.post(
        f"{server.url}/api/v4/projects/{project['id']}/packages/pypi",
        data={":action": "file_upload", "name": "demo", "version": version},
        files={"content": (filename, content)}, auth=("__token__", server.admin_token),
        timeout=60,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return time.monotonic() - started


def add_hook(server: LiveServer, project: dict, hook: Receiver, token: str = "") -> dict:
    made = server.api("POST", f"/projects/{project['id']}/hooks",
                      json={"url": hook.url, "token": token})  # fmt: skip
    assert made.status_code == 201, made.text
    return made.json()


def wait_events(server: LiveServer, project: dict, hook: dict, done: int,
                timeout: float = 60) -> list[dict]:  # fmt: skip
    """The hook's events once ``done`` of them are delivered or failed."""
    deadline = time.monotonic() + timeout
    while True:
        events = server.api("GET", f"/projects/{project['id']}/hooks/{hook['id']}/events").json()
        if sum(e["state"] != "pending" for e in events) >= done or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def test_a_real_worker_delivers_signed_events(live):
    server, project = live
    with receiver() as hooked:
        add_hook(server, project, hooked, token="live-secret")
        upload(server, project, "1.0")
        received = hooked.wait_for(2)
    for item in received:
        assert item.headers["X-Packyard-Signature-256"] == signed_by("live-secret", item.body)
    names = [json.loads(r.body)["event_name"] for r in received]
    assert names == ["package_published", "package_processed"]


def test_a_receiver_failing_twice_gets_the_event_on_the_third_try(live):
    server, project = live
    with receiver([503, 500], per_event=True) as flaky:  # each event fails twice
        hook = add_hook(server, project, flaky)
        upload(server, project, "1.0")
        flaky.wait_for(6)  # published and processed: 503, 500, then 200
        events = wait_events(server, project, hook, 2)
    assert {e["trigger"] for e in events} == {"package_published", "package_processed"}
    for event in events:
        assert event["state"] == "delivered" and event["attempts"] == 3
        tries = event["deliveries"]
        assert [d["response_status"] for d in tries] == [503, 500, 200]
        assert [d["status"] for d in tries] == ["failed", "failed", "succeeded"]
        assert tries[0]["error"] == "HTTP 503 Service Unavailable"
        times = [
            r.at for r in flaky.received if r.headers["X-Packyard-Event-Id"] == str(event["id"])
        ]
        assert times[2] - times[1] > (times[1] - times[0]) * 1.3  # backoff: 1 s, then 2 s


def test_a_hanging_receiver_slows_no_upload_and_times_out_in_the_log(live):
    server, project = live
    quick = upload(server, project, "0.1")  # no hook yet: the reference
    with receiver(["hang"] * 1000) as stuck:
        hook = add_hook(server, project, stuck)
        durations = [upload(server, project, f"1.{n}") for n in range(3)]
        stuck.wait_for(1)
        deliveries = wait_deliveries(server, project, hook, 2)
    assert max(durations) < quick + 1.5  # the 2 s receiver timeout is nowhere in them
    assert all(d["status"] == "failed" and d["response_status"] is None for d in deliveries)
    assert all("ReadTimeout" in d["error"] for d in deliveries)
    assert all(d["execution_duration"] >= 1.9 for d in deliveries)


def wait_deliveries(server: LiveServer, project: dict, hook: dict, count: int,
                    timeout: float = 60) -> list[dict]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        events = server.api("GET", f"/projects/{project['id']}/hooks/{hook['id']}/events").json()
        deliveries = [d for e in events for d in e["deliveries"]]
        if len(deliveries) >= count or time.monotonic() > deadline:
            return deliveries
        time.sleep(0.2)


def test_no_transaction_stays_open_while_the_receiver_answers(registry, world):
    """A slow receiver must not hold a transaction (PostgreSQL: idle in transaction, a
    snapshot that keeps VACUUM back; SQLite: a read that keeps the WAL from checkpointing)."""
    session = db.session()
    open_during_post: list[bool] = []
    with receiver() as hooked:
        answer = hooked.answer

        def noting(event_id: str) -> int | str:  # called while the POST waits for its answer
            open_during_post.append(session.in_transaction())
            return answer(event_id)

        hooked.answer = noting  # type: ignore[method-assign]
        hook = WebHook(url=hooked.url, project_id=world["project"].id, package_events=True,
                       enable_ssl_verification=True)  # fmt: skip
        event = WebHookEvent(hook=hook, event_name="package_published", payload={"a": 1})
        session.add_all([hook, event])
        session.commit()
        assert deliver(session, event.id, timeout=5, last_try=False) is True
    assert open_during_post == [False]
    session.expire_all()
    delivered = session.get(WebHookEvent, event.id)
    assert delivered.state == "delivered" and delivered.attempts == 1
    assert [d.response_status for d in delivered.deliveries] == [200]
