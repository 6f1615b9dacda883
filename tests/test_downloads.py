"""Download statistics: counted in memory during the request, written in batches, shown in
the packages API (``download_count``, GitLab's ``last_downloaded_at``) and on the package
page; then real pip installs, concurrent, against a live server restarted mid-way."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from sqlalchemy import select

from app.caching.generation import current_generation
from app.extensions import db
from app.models import Package, PackageFile
from app.web.pypi import DOWNLOADS
from tests.dists import make_sdist, make_wheel
from tests.services import LiveServer, packyard_env


def auth(token: str) -> dict[str, str]:
    return {"PRIVATE-TOKEN": token}


def flush_downloads(app) -> int:
    counter = app.extensions.get(DOWNLOADS)
    return counter.flush(db.session) if counter is not None else 0


def test_downloads_are_counted_without_a_write_in_the_request(client, registry):
    root = registry.user("root", admin=True)
    token = registry.token(root)
    project = registry.project(registry.group("team", visibility="public"), "lib", "public")
    wheel, wheel_bytes = make_wheel("demo", "1.0")
    sdist, sdist_bytes = make_sdist("demo", "1.0")
    for filename, content in ((wheel, wheel_bytes), (sdist, sdist_bytes)):
        assert registry.upload(project, filename, content, token=token).status_code == 201
    files = {f.filename: f for f in db.session.execute(select(PackageFile)).scalars()}
    base = f"/api/v4/projects/{project.id}/packages/pypi/files"
    for _ in range(3):
        assert client.get(f"{base}/{files[wheel].sha256}/{wheel}").status_code == 200
    assert client.get(f"{base}/{files[sdist].sha256}/{sdist}").status_code == 200
    assert client.head(f"{base}/{files[sdist].sha256}/{sdist}").status_code == 200  # not one
    assert client.get(f"{base}/{files[wheel].sha256}/{wheel}.metadata").status_code == 200
    db.session.expire_all()
    package = db.session.execute(select(Package)).scalar_one()
    assert package.download_count == 0 and package.last_downloaded_at is None  # not yet
    assert flush_downloads(registry.app) == 4
    assert flush_downloads(registry.app) == 0  # nothing is written twice
    api = f"/api/v4/projects/{project.id}/packages"
    shown = client.get(api, headers=auth(token)).json[0]
    assert shown["download_count"] == 4 and shown["last_downloaded_at"].endswith("Z")
    listed = client.get(f"{api}/{package.id}/package_files", headers=auth(token)).json
    assert {f["file_name"]: f["download_count"] for f in listed} == {wheel: 3, sdist: 1}
    page = client.get(f"/team/lib/-/packages/{package.id}").get_data(as_text=True)
    assert '<dd class="downloads">4' in page and 'class="num downloads">3</td>' in page


def test_writing_download_counts_keeps_the_cached_pages(client, registry):
    """No page or access decision shows a count: writing counts must not drop every
    process's caches (during installs that would be every few seconds)."""
    token = registry.token(registry.user("root", admin=True))
    project = registry.project(registry.group("team", visibility="public"), "lib", "public")
    wheel, content = make_wheel("demo", "1.0")
    assert registry.upload(project, wheel, content, token=token).status_code == 201
    stored = db.session.execute(select(PackageFile)).scalar_one()
    url = f"/api/v4/projects/{project.id}/packages/pypi/files/{stored.sha256}/{wheel}"
    assert client.get(url).status_code == 200
    before = current_generation(db.engine)
    assert flush_downloads(registry.app) == 1
    assert current_generation(db.engine) == before
    db.session.expire_all()
    assert db.session.get(PackageFile, stored.id).download_count == 1


# --- real pip installs against a live server -------------------------------------------


def pip_install(index_url: str, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps",
         "--disable-pip-version-check", "--target", str(target), "--index-url", index_url,
         "demo==1.0"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def installs(server: LiveServer, project: dict, count: int, tmp: Path, tag: str) -> None:
    host = server.url.removeprefix("http://")
    index = f"http://__token__:{server.admin_token}@{host}/api/v4/projects/{project['id']}"
    index += "/packages/pypi/simple/"
    with ThreadPoolExecutor(max_workers=count) as pool:
        done = pool.map(lambda n: pip_install(index, tmp / f"{tag}-{n}"), range(count))
        list(done)


def counts(server: LiveServer, project: dict) -> tuple[int, str | None]:
    package = server.api("GET", f"/projects/{project['id']}/packages").json()[0]
    return package["download_count"], package["last_downloaded_at"]


def wait_count(server: LiveServer, project: dict, expected: int, within: float) -> int:
    deadline = time.monotonic() + within
    while (seen := counts(server, project)[0]) < expected and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


def served_downloads(access_log: Path) -> list[str]:
    """The access log's lines for GETs of the wheel itself (what is counted)."""
    lines = access_log.read_text(errors="replace").splitlines()
    return [line for line in lines if '"GET ' in line and ".whl " in line]


def diagnosis(tmp_path: Path, access_log: Path) -> str:
    serve_log = (tmp_path / "serve.log").read_text(errors="replace").splitlines()
    return "\n".join(["wheel GETs served:", *served_downloads(access_log), "serve.log:",
                      *serve_log[-40:]])  # fmt: skip


def test_concurrent_pip_installs_are_all_counted_across_a_web_restart(tmp_path: Path):
    """The documented bound: a restart loses nothing older than one flush interval. (The
    write each web process tries as it stops is best effort, so it is not counted on.)
    Counts must be written within the interval; the wait allows a loaded machine more."""
    access_log = tmp_path / "access.log"
    env = packyard_env(
        tmp_path, DOWNLOAD_FLUSH_INTERVAL="2", UPSTREAM_MODE="off", ACCESS_LOG=str(access_log)
    )
    server = LiveServer(tmp_path, env, worker=True, web_workers=2)
    try:
        group = server.api("POST", "/groups", json={"name": "Team", "path": "team"}).json()
        fields = {"name": "Lib", "path": "lib", "namespace_id": group["id"]}
        project = server.api("POST", "/projects", json=fields).json()
        filename, content = make_wheel("demo", "1.0")
        uploaded = requests.post(
            f"{server.url}/api/v4/projects/{project['id']}/packages/pypi",
            data={":action": "file_upload", "name": "demo", "version": "1.0"},
            files={"content": (filename, content)}, auth=("__token__", server.admin_token),
            timeout=60,
        )  # fmt: skip
        assert uploaded.status_code == 201
        installs(server, project, 6, tmp_path, "before")
        seen = wait_count(server, project, 6, within=2 + 28)
        assert seen == 6, f"{seen} of 6 counted\n{diagnosis(tmp_path, access_log)}"
        time.sleep(2.5)  # nothing left unwritten: a restart must lose none of the 6
        server.stop()
        server = LiveServer(tmp_path, env, worker=True, web_workers=2)
        assert counts(server, project)[0] == 6
        installs(server, project, 5, tmp_path, "after")
        seen = wait_count(server, project, 11, within=2 + 28)
        assert seen == 11, f"{seen} of 11 counted\n{diagnosis(tmp_path, access_log)}"
        assert counts(server, project)[1] is not None
        assert len(served_downloads(access_log)) == 11  # each install downloaded once
    finally:
        server.stop()
