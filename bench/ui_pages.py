"""How fast the web pages render with many packages.

Builds, straight through the ORM in a fresh temporary data directory (SQLite by default):

- 5,000 packages (one processed wheel each, with a summary and a long description in its
  core metadata) spread over 50 private projects in 10 groups, and
- one package name with 500 versions (a wheel and an sdist each) in another project;

then times, with the Flask test client, as a signed-in member (reporter on every group,
so access is worked out from memberships) and as an admin:

- the home page (page 1 of the 5,000), the home page with a search, a later home page,
- the package page of the package with 500 versions (its description rendered).

Prints the median and 95th percentile of each and exits 1 when a median is over the budget
(100 ms).  ``--database-url`` runs the same on another database (an empty PostgreSQL one).

    .venv/bin/python bench/ui_pages.py
    .venv/bin/python bench/ui_pages.py --runs 100 --database-url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password"
DESCRIPTION = "# {name}\n\nA package for benchmarks.\n\n" + "Some *Markdown* text. " * 200
BUDGET_MS = 100.0


def build(app: object, packages: int, versions: int) -> int:
    """Create the data; returns the id of one version of the many-versions package."""
    from sqlalchemy import func, insert, select

    from app.domain.accounts import create_user
    from app.domain.namespaces import add_member
    from app.extensions import db
    from app.models import Group, Package, PackageFile, Project

    now = datetime.now(UTC)
    groups = [Group(name=f"Group {g}", path=f"g{g}", full_path=f"g{g}") for g in range(10)]
    db.session.add_all(groups)
    db.session.flush()
    projects = [
        Project(name=f"P{p}", path=f"p{p}", full_path=f"g{p % 10}/p{p}", group_id=groups[p % 10].id)
        for p in range(51)
    ]
    db.session.add_all(projects)
    db.session.flush()
    member = create_user(db.session, "member", None, PASSWORD, False)
    create_user(db.session, "root", None, PASSWORD, True)  # "admin" is a reserved route
    for group in groups:
        add_member(db.session, member, 20, group=group)

    rows = [
        {
            "project_id": projects[i % 50].id,
            "name": f"pkg-{i:05d}",
            "normalized_name": f"pkg-{i:05d}",
            "version": "1.0",
            "canonical_version": "1",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(packages)
    ]
    many = projects[50]
    rows += [
        {
            "project_id": many.id,
            "name": "many-versions",
            "normalized_name": "many-versions",
            "version": f"1.{v}.0",
            "canonical_version": f"1.{v}",
            "created_at": now,
            "updated_at": now,
        }
        for v in range(versions)
    ]
    db.session.execute(insert(Package), rows)
    ids = db.session.execute(select(Package.id, Package.name, Package.version, Package.project_id))
    files = []
    for package_id, name, version, project_id in ids:
        stem = name.replace("-", "_")
        kinds = ("whl", "tar.gz") if name == "many-versions" else ("whl",)
        for kind in kinds:
            filename = (
                f"{stem}-{version}-py3-none-any.whl"
                if kind == "whl"
                else f"{stem}-{version}.tar.gz"
            )
            files.append(_file_row(package_id, project_id, filename, name, version, now))
    db.session.execute(insert(PackageFile), files)
    db.session.commit()
    newest = select(func.max(Package.id)).where(Package.name == "many-versions")
    return int(db.session.execute(newest).scalar_one())


def _file_row(
    package_id: int, project_id: int, filename: str, name: str, version: str, now: datetime
) -> dict:
    meta = {
        "metadata_version": "2.1",
        "name": name,
        "version": version,
        "summary": f"The {name} package, version {version}",
        "description": DESCRIPTION.format(name=name),
        "description_content_type": "text/markdown",
        "requires_dist": ["requests>=2", "attrs"],
        "requires_python": ">=3.9",
        "classifiers": ["Programming Language :: Python :: 3"],
        "project_urls": ["Source, https://example.com/src"],
    }
    return {
        "package_id": package_id,
        "project_id": project_id,
        "filename": filename,
        "size": 12345,
        "sha256": "a" * 64,
        "md5": "b" * 32,
        "blake2_256": "c" * 64,
        "storage_key": f"{project_id}/x/{filename}",
        "uploaded_by": "bench",
        "state": "default",
        "attempts": 1,
        "created_at": now,
        "enqueued_at": now,
        "started_at": now - timedelta(seconds=1),
        "processed_at": now,
        "core_metadata": meta,
        "metadata_sha256": "d" * 64,
        "metadata_bytes": b"Metadata-Version: 2.1\n",
        "summary": meta["summary"],
    }


def signed_in_client(app: object, username: str) -> object:
    client = app.test_client()  # type: ignore[attr-defined]
    page = client.get("/users/sign_in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/users/sign_in", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303, response.status_code
    return client


def measure(client: object, path: str, runs: int) -> list[float]:
    for _ in range(3):  # warm up: template compilation, caches, connections
        assert client.get(path).status_code == 200, path  # type: ignore[attr-defined]
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path)  # type: ignore[attr-defined]
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, path
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=int, default=5000)
    parser.add_argument("--versions", type=int, default=500)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--database-url", default=None, help="default: SQLite in the temp dir")
    args = parser.parse_args()

    from app import create_app
    from app.extensions import db
    from app.migrations import upgrade

    with tempfile.TemporaryDirectory(prefix="packyard-ui-bench-") as tmp:
        config = {"DATA_DIR": tmp, "LOAD_ENTRYPOINT_PLUGINS": False}
        if args.database_url:
            config["DATABASE_URL"] = args.database_url
        app = create_app(config)
        with app.app_context():
            upgrade()
            started = time.perf_counter()
            package_id = build(app, args.packages, args.versions)
            print(
                f"built {args.packages} packages + 1 with {args.versions} versions "
                f"in {time.perf_counter() - started:.1f}s "
                f"({app.config['DATABASE_URL'].split(':')[0]})"
            )
            db.session.remove()
        pages = {
            "home": "/",
            "home, page 40": "/?page=40",
            "home, search": "/?search=pkg-0421",
            f"package, {args.versions} versions": f"/g0/p50/-/packages/{package_id}",
        }
        failed = False
        print(f"{'visitor':8} {'page':28} {'median':>9} {'p95':>9}  (ms, {args.runs} runs)")
        for username in ("member", "root"):
            client = signed_in_client(app, username)
            for label, path in pages.items():
                timings = sorted(measure(client, path, args.runs))
                median = statistics.median(timings)
                p95 = timings[int(len(timings) * 0.95) - 1]
                failed |= median > BUDGET_MS
                print(f"{username:8} {label:28} {median:9.1f} {p95:9.1f}")
        with app.app_context():
            db.engine.dispose()
    print("over budget" if failed else f"every median is under {BUDGET_MS:.0f} ms")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
