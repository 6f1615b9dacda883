"""Request ids: taken from ``X-Request-Id`` (or made up), returned, and found in the JSON
log lines of the worker that processed the file the request uploaded (real processes)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

from tests.dists import make_wheel
from tests.services import BIN, LiveProcess, LiveServer, packyard_env
from tests.test_e2e_clients import Deployment


def test_an_id_is_made_up_when_none_or_a_bad_one_is_given(client):
    made = client.get("/-/health").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{24}", made)
    assert client.get("/-/health").headers["X-Request-Id"] != made
    assert (
        client.get("/-/health", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"]
        == "abc-123"
    )
    forged = client.get("/-/health", headers={"X-Request-Id": 'x" level="ERROR'})
    assert re.fullmatch(r"[0-9a-f]{24}", forged.headers["X-Request-Id"])


def test_answers_from_the_response_cache_carry_their_own_id_once(registry, wheel):
    project = registry.project(registry.group("team"), "lib")
    token = registry.token(registry.user("root", admin=True))
    registry.upload(project, *wheel, token=token)
    url = f"/api/v4/projects/{project.id}/packages/pypi/simple/demo-pkg/"
    for n in range(4):  # the first fills the cache; the others are answered from it
        response = registry.client.get(
            url, headers={"PRIVATE-TOKEN": token, "X-Request-Id": f"r{n}"}
        )
        assert response.status_code == 200
        assert response.headers.getlist("X-Request-Id") == [f"r{n}"]


def json_lines(path: Path) -> list[dict]:
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue  # uWSGI's and Celery's own banner lines
    return found


@pytest.mark.e2e
def test_the_worker_logs_the_id_of_the_request_that_uploaded_the_file(tmp_path):
    env = packyard_env(tmp_path, LOG_FORMAT="json")
    server = LiveServer(tmp_path, env, worker=False)
    worker = LiveProcess([str(BIN / "packyard"), "worker", "--concurrency=1"], env,
                         tmp_path / "worker.log")  # fmt: skip
    try:
        deployment = Deployment(server, tmp_path)
        filename, content = make_wheel("traced", "1.0")
        response = requests.post(
            deployment.upload_url, auth=("__token__", deployment.token),
            data={":action": "file_upload", "name": "traced", "version": "1.0"},
            files={"content": (filename, content)},
            headers={"X-Request-Id": "upload-7f3a"}, timeout=60,
        )  # fmt: skip
        assert response.status_code == 201
        assert response.headers["X-Request-Id"] == "upload-7f3a"
        deployment.wait_processed("traced", filename)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            lines = [r for r in json_lines(tmp_path / "worker.log") if r["request_id"]]
            if lines:
                break
            time.sleep(0.2)
    finally:
        server.stop()
        worker.stop()
    assert lines, worker.output()
    assert {line["request_id"] for line in lines} == {"upload-7f3a"}
    processed = [line for line in lines if "processed: default" in line["message"]]
    assert processed and processed[0]["task"] == "packyard.process_file"
    assert processed[0]["level"] == "INFO" and processed[0]["time"]
