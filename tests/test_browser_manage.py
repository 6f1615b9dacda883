"""The README's first-admin walk-through in headless Chromium against a live ``packyard
serve``: ``create-admin root --password``, then only the browser: a group, a project, a
user made a member, a deploy token, and (after an upload) a yanked release.  A developer
then sees none of the maintainer buttons, and a signed-out visitor is sent to sign in.
Screenshots (1280 px and 390 px) go to ``tests/artifacts/screenshots/manage-*.png``."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.dists import make_wheel
from tests.services import BIN, LiveServer, packyard_env, unavailable
from tests.test_browser import PASSWORD, SCREENSHOTS, TIMEOUT, browser  # noqa: F401

pytestmark = pytest.mark.e2e
WIDE, NARROW = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("manage")
    env = packyard_env(data)
    live = LiveServer(data, env, worker=True)
    try:
        subprocess.run(
            [str(BIN / "packyard"), "create-admin", "root", "--password"],
            env=env, input=f"{PASSWORD}\n", capture_output=True, text=True, check=True,
        )  # fmt: skip
        yield live
    finally:
        live.stop()


def sign_in(browser, server: LiveServer, username: str, viewport: dict = WIDE):  # noqa: F811
    context = browser.new_context(viewport=viewport)
    context.set_default_timeout(TIMEOUT)
    page = context.new_page()
    page.goto(f"{server.url}/users/sign_in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server.url}/")
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"manage-{name}.png"), full_page=True)


# Elements reaching past the right edge (tables included: they reflow, never scroll).
WIDER_THAN = """(limit) => [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > limit + 0.5)
    .slice(0, 5).map(e => e.tagName + '.' + e.className)"""


def no_horizontal_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    wide = page.evaluate(WIDER_THAN, page.viewport_size["width"])
    assert width <= page.viewport_size["width"], f"{page.url} is {width}px wide: {wide}"


def test_a_new_admin_runs_the_registry_from_the_browser(browser, server):  # noqa: F811
    from playwright.sync_api import expect

    root = sign_in(browser, server, "root")
    url = server.url

    # A group and a project in it.
    root.get_by_role("link", name="New group").click()
    root.get_by_label("Name").fill("Acme")
    root.get_by_label("Path").fill("acme")
    root.get_by_label("Description").fill("Acme's packages <b>& tools</b>")
    root.get_by_role("button", name="Create group").click()
    expect(root.locator(".flash")).to_contain_text("Created the group acme")
    expect(root.locator(".namespace-description")).to_have_text("Acme's packages <b>& tools</b>")
    root.get_by_role("link", name="New project").click()
    root.get_by_label("Name").fill("Tools")
    root.get_by_label("Path").fill("tools")
    root.get_by_role("button", name="Create project").click()
    root.wait_for_url(f"{url}/acme/tools/-/packages")
    shot(root, "project")

    # A user, made a developer of the project.
    root.get_by_role("link", name="Users").click()
    root.get_by_label("Username").fill("dana")
    root.get_by_label("Password").fill(PASSWORD)
    root.get_by_role("button", name="Create user").click()
    expect(root.locator("table")).to_contain_text("dana")
    root.goto(f"{url}/acme/tools/-/project_members")
    root.get_by_label("Username").fill("dana")
    root.get_by_label("Role").select_option(label="Developer")
    root.get_by_role("button", name="Add member").click()
    expect(root.locator("table.members")).to_contain_text("dana")
    shot(root, "members")

    # A deploy token, shown once.
    root.get_by_role("link", name="Deploy tokens").click()
    root.get_by_label("Name", exact=True).fill("ci")
    root.get_by_role("button", name="Create deploy token").click()
    token = root.locator("#new-token").inner_text().strip()
    assert token.startswith("pyd-dt-")
    expect(root.locator("table.tokens")).to_contain_text("ci")
    shot(root, "deploy-tokens")

    # A release (uploaded as twine would), yanked from its page behind a confirmation.
    filename, content = make_wheel("rocket", "1.0", summary="Launches things")
    uploaded = requests.post(
        f"{url}/api/v4/projects/acme%2Ftools/packages/pypi",
        auth=("__token__", server.admin_token),
        data={":action": "file_upload", "name": "rocket", "version": "1.0"},
        files={"content": (filename, content)},
        timeout=30,
    )
    assert uploaded.status_code == 201, uploaded.text
    root.goto(f"{url}/acme/tools/-/packages")
    root.get_by_role("link", name="rocket").click()
    expect(root.get_by_role("button", name="Yank 1.0")).to_be_hidden()  # folded until asked
    root.locator("summary", has_text="Yank…").click()
    root.get_by_label("Reason").fill("broken build")
    root.get_by_role("button", name="Yank 1.0").click()
    expect(root.locator(".package-head")).to_contain_text("This release is yanked: broken build")
    shot(root, "yanked")
    package_url = root.url
    root.context.close()

    # A developer sees the project, its members and the package, but no maintainer button.
    dana = sign_in(browser, server, "dana")
    dana.goto(package_url)
    expect(dana.locator(".package-head")).to_contain_text("yanked")
    assert dana.locator("summary", has_text="Yank").count() == 0
    assert dana.locator("summary", has_text="Delete").count() == 0
    dana.goto(f"{url}/acme/tools/-/project_members")
    expect(dana.locator("table.members")).to_contain_text("dana")
    assert dana.get_by_role("button", name="Add member").count() == 0
    assert dana.get_by_role("link", name="Deploy tokens").count() == 0
    dana.context.close()

    # At 390 px the management pages fit the screen (tables reflow into stacked rows).
    narrow = sign_in(browser, server, "root", NARROW)
    for path, name in (("/acme/tools/-/project_members", "members-390"),
                       ("/acme/tools/-/project_deploy_tokens", "deploy-tokens-390"),
                       (package_url.removeprefix(url), "package-390")):  # fmt: skip
        narrow.goto(f"{url}{path}")
        no_horizontal_scroll(narrow)
        shot(narrow, name)
    narrow.context.close()

    # A signed-out visitor is sent to sign in.
    visitor = browser.new_context(viewport=WIDE).new_page()
    visitor.goto(f"{url}/acme/tools/-/project_members")
    assert "/users/sign_in" in visitor.url
    visitor.context.close()


AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
AXE_PAGES = (
    "/", "/acme", "/acme/tools/-/packages", "/acme/tools/-/project_members",
    "/acme/tools/-/project_deploy_tokens", "/acme/tools/-/project_settings",
    "/acme/-/group_members", "/acme/-/group_settings", "/-/groups/new", "/-/admin/users",
    "/-/profile/password", "/-/profile/personal_access_tokens", "/-/dashboard", "/users/sign_in",
)  # fmt: skip


def fail_a_file(server: LiveServer) -> None:
    """A broken archive, settled failed by the worker, so the dashboard lists it."""
    uploaded = requests.post(
        f"{server.url}/api/v4/projects/acme%2Ftools/packages/pypi",
        auth=("__token__", server.admin_token),
        data={":action": "file_upload", "name": "broken", "version": "0.1"},
        files={"content": ("broken-0.1.tar.gz", b"\x1f\x8b but not gzip")},
        timeout=30,
    )
    assert uploaded.status_code == 201, uploaded.text
    headers = {"PRIVATE-TOKEN": server.admin_token}
    for _ in range(150):
        found = requests.get(f"{server.url}/api/v4/projects/acme%2Ftools/packages?status=error",
                             headers=headers, timeout=30).json()  # fmt: skip
        if found:
            return
        time.sleep(0.2)
    raise AssertionError("the broken archive did not fail")


def test_pages_have_no_serious_accessibility_violations(browser, server):  # noqa: F811
    """axe-core (tests/axe, ``make axe``) finds no serious or critical violation, at
    1280 px and at 390 px. Runs after the walk-through above, which made the rows."""
    if not AXE.exists():
        unavailable("axe-core is not installed: run `make axe` (needs npm)")
    source = AXE.read_text()
    fail_a_file(server)  # the dashboard's failed rows too: their badge and confirmation
    found: dict[str, list[str]] = {}
    for viewport in (WIDE, NARROW):
        page = sign_in(browser, server, "root", viewport)
        for path in (*AXE_PAGES, "/acme/tools/-/packages/1"):
            page.goto(f"{server.url}{path}")
            page.evaluate(source)  # through the devtools protocol: the page's CSP allows it
            result = page.evaluate(
                "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations"
                ".filter(v => ['serious', 'critical'].includes(v.impact))"
                ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')))"
            )
            if result:
                found[f"{path} @{viewport['width']}"] = result
        page.context.close()
    (SCREENSHOTS / "axe-violations.json").write_text(json.dumps(found, indent=1))
    assert not found, found


# Every page with a table, once the walk-through above has made their rows.
TABLE_PAGES = (
    "/acme/tools/-/packages", "/acme/tools/-/packages/1", "/acme/tools/-/project_members",
    "/acme/-/group_members", "/acme/tools/-/project_deploy_tokens", "/-/admin/users",
    "/-/profile/personal_access_tokens", "/-/dashboard",
)  # fmt: skip
# Table cells (with a size: hidden headings have none) not wholly inside the viewport.
CELLS_OFF_SCREEN = """() => [...document.querySelectorAll('table td, table th')]
    .map(c => [c, c.getBoundingClientRect()])
    .filter(([c, r]) => r.width > 0 && r.height > 0)
    .filter(([c, r]) => r.left < -0.5 || r.right > window.innerWidth + 0.5)
    .slice(0, 5).map(([c, r]) => `${c.dataset.label || c.textContent.trim().slice(0, 30)}:`
                                + ` ${Math.round(r.left)}..${Math.round(r.right)}`)"""


@pytest.mark.parametrize("viewport", [NARROW, WIDE], ids=["390px", "1280px"])
def test_no_part_of_a_table_is_off_screen(browser, server, viewport):  # noqa: F811
    """At 390 px tables reflow (stacked rows, each cell under its heading, CSS only);
    at 1280 px they fit. Either way every cell lies within the viewport."""
    page = sign_in(browser, server, "root", viewport)
    off: dict[str, list[str]] = {}
    for path in TABLE_PAGES:
        page.goto(f"{server.url}{path}")
        assert page.locator("table td").count() > 0, f"{path} has no table rows"
        if cells := page.evaluate(CELLS_OFF_SCREEN):
            off[path] = cells
        no_horizontal_scroll(page)
        labelled = page.locator("table td[data-label]:not([data-label=Actions])")
        if viewport is NARROW and labelled.count():
            label = labelled.first.evaluate("c => getComputedStyle(c, '::before').content")
            assert label.strip('"') == labelled.first.get_attribute("data-label")
            shot(page, "table-390-" + path.strip("/").replace("/", "_").replace("-_", ""))
    page.context.close()
    assert not off, off


def test_a_developer_leaves_the_project_from_its_page(browser, server):  # noqa: F811
    """Last in this module: dana, the walk-through's developer, leaves acme/tools."""
    from playwright.sync_api import expect

    dana = sign_in(browser, server, "dana")
    dana.goto(f"{server.url}/acme/tools/-/project_members")
    expect(dana.get_by_role("button", name="Leave project")).to_be_hidden()  # folded
    dana.locator("summary", has_text="Leave this project").click()
    dana.get_by_role("button", name="Leave project").click()
    expect(dana.locator(".flash")).to_contain_text("You left acme/tools")
    assert dana.goto(f"{server.url}/acme/tools/-/packages").status == 404  # private
    dana.context.close()
