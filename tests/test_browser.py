"""The web pages in headless Chromium (Debian's, driven by Playwright) against a live server.

The server runs without its embedded worker at first, so the dashboard can be watched
showing a file ``processing`` with no worker online; the test then starts a worker
(``packyard worker``) and sees the file become ``done``.  Screenshots of the home, package
and dashboard pages are written to ``tests/artifacts/screenshots/``."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.dists import make_sdist, make_wheel
from tests.services import BIN, LiveProcess, LiveServer, packyard_env, unavailable
from tests.test_e2e_clients import client_env, fresh_venv, run, write

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parent / "artifacts" / "screenshots"
TIMEOUT = 30_000  # ms: processing and the dashboard's 2 s refresh fit well inside
PASSWORD = "correct horse battery"
DESCRIPTION = """\
Description-Content-Type: text/markdown
Classifier: Programming Language :: Python :: 3
Classifier: Intended Audience :: Developers
Project-URL: Source, https://git.example.com/acme/rocket

# Rocket

Launches **things** into orbit. Works with `pip` and `uv`.

```python
import rocket
rocket.launch(payload="satellite")
```

| stage | fuel |
|-------|------|
| 1     | RP-1 |
"""


class Site:
    """A live Packyard with a private project, a developer and an admin who sign in."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.env = packyard_env(data)
        self.server = LiveServer(data, self.env, worker=False)
        self.url = self.server.url
        self.worker: LiveProcess | None = None
        group = self._api("POST", "/groups", data={"name": "Acme", "path": "acme"})
        project = self._api(
            "POST",
            "/projects",
            data={"name": "Tools", "path": "tools", "namespace_id": group["id"]},
        )
        self.project_id = project["id"]
        self._api("POST", "/users", data={"username": "ops", "password": PASSWORD, "admin": "true"})
        dana = self._api("POST", "/users", data={"username": "dana", "password": PASSWORD})
        self._api(
            "POST",
            f"/projects/{self.project_id}/members",
            data={"user_id": dana["id"], "access_level": 30},
        )
        self.upload_url = f"{self.url}/api/v4/projects/acme%2Ftools/packages/pypi"

    def _api(self, method: str, path: str, **kwargs: object) -> dict:
        response = self.server.api(method, path, **kwargs)
        assert response.status_code == 201, response.text
        return response.json()

    def start_worker(self) -> None:
        if self.worker is None:
            args = [str(BIN / "packyard"), "worker", "--concurrency=2", "--without-mingle"]
            self.worker = LiveProcess(args, self.env, self.data / "worker.log")

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    live = Site(tmp_path_factory.mktemp("browser"))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        unavailable("chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def signed_in(browser, site: Site, username: str, viewport: dict | None = None):
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    page.goto(f"{site.url}/users/sign_in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{site.url}/")
    return page


def task_row(page, filename: str, section: str = "recent"):
    return page.locator(f'[data-section="{section}"] tr.task', has_text=filename)


def test_token_twine_upload_processing_and_package_page(browser, site, tmp_path):
    from playwright.sync_api import expect

    # A developer signs in and creates a token on the tokens page.
    dana = signed_in(browser, site, "dana")
    expect(dana.locator(".nav .who")).to_have_text("dana")
    dana.get_by_role("link", name="Tokens").click()
    dana.get_by_label("Name").fill("twine on my laptop")
    dana.get_by_label("api read and write (upload)").check()
    dana.get_by_role("button", name="Create token").click()
    token = dana.locator("#new-token").inner_text().strip()
    assert token.startswith("pyd-pat-")
    expect(dana.locator("table.tokens")).to_contain_text("twine on my laptop")
    expect(dana.locator("table.tokens")).to_contain_text(token[:12])
    dana.screenshot(path=str(SCREENSHOTS / "tokens.png"), full_page=True)

    # The admin watches the dashboard: no worker runs yet.
    ops = signed_in(browser, site, "ops")
    ops.goto(f"{site.url}/-/dashboard")
    expect(ops.locator('[data-section="workers"]')).to_contain_text("No worker is online")

    # twine uploads with the token; the file waits, processing, and the queue holds its task.
    wheel = write(
        tmp_path,
        make_wheel(
            "rocket",
            "1.2.0",
            summary="Launches things into orbit",
            requires_dist=("requests>=2.31",),
            requires_python=">=3.10",
            extra=DESCRIPTION,
        ),
    )
    run(
        [
            str(BIN / "twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            site.upload_url,
            "-u",
            "__token__",
            "-p",
            token,
            str(wheel),
        ],
        tmp_path,
    )
    row = task_row(ops, wheel.name)
    expect(row.locator(".badge")).to_have_text("processing")  # live refresh, no reload
    expect(ops.locator('[data-section="queues"] tr.queue')).to_contain_text("1")

    # A worker starts: it shows up with its concurrency, and the file becomes done.
    site.start_worker()
    expect(row.locator(".badge")).to_have_text("done")
    expect(ops.locator('[data-section="workers"] tr.worker')).to_contain_text("2")
    expect(ops.locator('[data-section="queues"] tr.queue')).to_contain_text("0")

    # The home page lists the package; its page shows the metadata and the install command.
    dana.goto(f"{site.url}/")
    expect(dana.locator(".packages")).to_contain_text("Launches things into orbit")
    dana.screenshot(path=str(SCREENSHOTS / "home.png"), full_page=True)
    dana.get_by_role("link", name="rocket").click()
    expect(dana.locator(".readme h1")).to_have_text("Rocket")
    package_url = dana.url
    expect(dana.locator(".deps")).to_contain_text("requests>=2.31")
    expect(dana.locator(".classifiers")).to_contain_text("Intended Audience :: Developers")
    expect(dana.locator("table.files")).to_contain_text(wheel.name)
    command = dana.locator("#install-pip").inner_text().strip()
    index = f"http://__token__:$PACKYARD_TOKEN@{site.url.removeprefix('http://')}"
    assert command == (
        f"pip install --index-url {index}/api/v4/projects/{site.project_id}/packages/pypi/simple/"
        " rocket==1.2.0"
    )
    dana.screenshot(path=str(SCREENSHOTS / "package.png"), full_page=True)
    phone = dana.context.browser.new_context(
        viewport={"width": 390, "height": 844}, storage_state=dana.context.storage_state()
    )
    phone_page = phone.new_page()
    phone_page.goto(package_url)
    phone_page.screenshot(path=str(SCREENSHOTS / "package-phone.png"), full_page=True)
    phone.close()

    # The command works as pasted, with the token in $PACKYARD_TOKEN (the shell expands it).
    expanded = subprocess.run(
        ["sh", "-c", f"printf '%s' {command}"], env={"PACKYARD_TOKEN": token},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert token in expanded
    args = shlex.split(command.replace("$PACKYARD_TOKEN", token))
    python = fresh_venv(tmp_path, "install-venv")
    run([str(BIN / "uv"), "pip", "install", "--python", str(python), *args[2:]], tmp_path)
    check = run([str(python), "-c", "import rocket; print(rocket.VERSION)"], tmp_path)
    assert check.stdout.strip() == "1.2.0"

    dana.goto(f"{site.url}/acme")
    expect(dana.locator("main")).to_contain_text("Launches things into orbit")
    dana.screenshot(path=str(SCREENSHOTS / "group.png"), full_page=True)

    # Signed out, the private project is hidden: the pages ask to sign in.
    dana.get_by_role("button", name="Sign out").click()
    expect(dana.get_by_text("You have signed out.")).to_be_visible()
    for url in (package_url, f"{site.url}/acme/tools/-/packages", f"{site.url}/acme"):
        dana.goto(url)
        assert "/users/sign_in" in dana.url
        expect(dana.locator("h1")).to_have_text("Sign in")
        assert "rocket" not in dana.content().lower()
    dana.goto(f"{site.url}/")
    expect(dana.locator("main")).not_to_contain_text("rocket")
    dana.context.close()
    ops.context.close()


def test_a_broken_archive_fails_offers_no_retry_and_is_deleted(browser, site, tmp_path):
    from playwright.sync_api import expect

    site.start_worker()
    ops = signed_in(browser, site, "ops")
    ops.goto(f"{site.url}/-/dashboard")
    response = requests.post(
        site.upload_url,
        auth=("__token__", site.server.admin_token),
        data={":action": "file_upload", "name": "broken", "version": "0.1"},
        files={"content": ("broken-0.1.tar.gz", b"\x1f\x8b then not a gzip archive")},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    failed = task_row(ops, "broken-0.1.tar.gz", "failed")
    expect(failed.locator("[data-label=State] .badge")).to_have_text("error")
    expect(failed.locator(".attempts")).to_have_text("1")
    expect(failed.locator(".error-reason")).not_to_be_empty()

    # A good sdist too, so the chart and the tables show both outcomes.
    sdist = write(tmp_path, make_sdist("rocket", "1.3.0", summary="Launches things into orbit"))
    run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--fail-with-body",
            "--user",
            f"__token__:{site.server.admin_token}",
            "-F",
            f"content=@{sdist}",
            "-F",
            "name=rocket",
            "-F",
            "version=1.3.0",
            site.upload_url,
        ],
        tmp_path,
    )
    expect(task_row(ops, sdist.name).locator(".badge")).to_have_text("done")

    # A broken archive cannot pass on a retry: none is offered, and it can be deleted.
    expect(failed.locator(".permanent")).to_have_text("Retry cannot fix")
    assert failed.get_by_role("button", name="Retry").count() == 0
    expect(ops.locator('[data-section="chart"] svg rect.failed').first).to_be_attached()
    ops.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)
    phone = ops.context.browser.new_context(
        viewport={"width": 390, "height": 844}, storage_state=ops.context.storage_state()
    )
    phone_page = phone.new_page()
    phone_page.goto(f"{site.url}/-/dashboard")
    phone_page.screenshot(path=str(SCREENSHOTS / "dashboard-phone.png"), full_page=True)
    phone.close()
    failed.locator("summary", has_text="Delete").click()
    ops.wait_for_timeout(2500)  # a live refresh passes: the open confirmation stays
    failed.get_by_role("button", name="Delete broken-0.1.tar.gz").click()
    expect(ops.get_by_text("Deleted the failed file.")).to_be_visible()
    expect(ops.locator('[data-section="failed"]')).to_contain_text("No failed tasks.")
    ops.context.close()


def test_pages_work_without_javascript(browser, site):
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    page.goto(f"{site.url}/users/sign_in")
    page.get_by_label("Username").fill("ops")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{site.url}/?search=orbit")
    expect(page.locator(".packages")).to_contain_text("rocket")
    page.goto(f"{site.url}/-/dashboard")
    expect(page.locator('[data-section="recent"]')).to_contain_text("rocket")
    expect(page.locator("#live")).to_contain_text("Reload")
    context.close()


def test_the_api_still_takes_uploads_without_csrf_tokens(site, tmp_path):
    """CSRF protection covers the pages' forms only: token clients post as before."""
    wheel = write(tmp_path, make_wheel("plain-upload", "1.0"))
    result = subprocess.run(
        [
            str(BIN / "twine"),
            "upload",
            "--non-interactive",
            "--disable-progress-bar",
            "--repository-url",
            site.upload_url,
            "-u",
            "__token__",
            "-p",
            site.server.admin_token,
            str(wheel),
        ],
        env=client_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
