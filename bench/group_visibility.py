"""Upload-to-group-index latency, and whether it grows with the size of the group.

Starts ``packyard serve`` (embedded defaults: SQLite, embedded worker) in a fresh data
directory, optionally pre-loads a group with N packages straight into the database, then
uploads wheels one by one and measures, for each, the time from the 201 answer to

- *listed*: the file appears on the group index page (a processing file is listed), and
- *processed*: the worker has read its metadata (``core-metadata`` appears in the page).

It also times GETs of the group root page and of one group detail page.  Run twice
(100 and 5,000 packages in the group) to see that the cost does not grow with the group.

    .venv/bin/python bench/group_visibility.py --packages 100 --uploads 100
    .venv/bin/python bench/group_visibility.py --packages 5000 --uploads 100
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.dists import make_wheel  # noqa: E402
from tests.services import LiveServer, packyard_env  # noqa: E402

JSON = "application/vnd.pypi.simple.v1+json"


def preload(data_dir: Path, packages: int) -> None:
    """N packages (one wheel row each) in group ``team``, project ``bulk``; no files."""
    from app import create_app
    from app.extensions import db
    from app.migrations import upgrade
    from app.models import Group, Package, PackageFile, Project

    app = create_app({"DATA_DIR": str(data_dir), "LOAD_ENTRYPOINT_PLUGINS": False})
    with app.app_context():
        upgrade()
        group = Group(name="team", path="team", full_path="team", visibility="private")
        db.session.add(group)
        db.session.flush()
        project = Project(name="bulk", path="bulk", full_path="team/bulk", group_id=group.id)
        db.session.add(project)
        db.session.flush()
        for index in range(packages):
            name = f"bulk-pkg-{index:05d}"
            package = Package(project_id=project.id, name=name, normalized_name=name,
                              version="1.0", canonical_version="1.0")  # fmt: skip
            db.session.add(package)
            db.session.flush()
            filename = f"bulk_pkg_{index:05d}-1.0-py3-none-any.whl"
            db.session.add(
                PackageFile(
                    package_id=package.id,
                    project_id=project.id,
                    filename=filename,
                    size=1,
                    sha256="0" * 64,
                    md5="0" * 32,
                    blake2_256="0" * 64,
                    storage_key=f"missing/{filename}",
                    state="default",
                )
            )
        db.session.commit()
        db.engine.dispose()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def timed_get(session: requests.Session, url: str, repeat: int = 50) -> float:
    durations = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.get(url, headers={"Accept": JSON}).raise_for_status()
        durations.append(time.perf_counter() - start)
    return statistics.median(durations)


def run(packages: int, uploads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        preload(data_dir, packages)
        server = LiveServer(data_dir, packyard_env(data_dir))
        try:
            return measure(server, uploads)
        finally:
            server.stop()


def measure(server: LiveServer, uploads: int) -> dict[str, float]:
    session = requests.Session()
    session.headers["PRIVATE-TOKEN"] = server.admin_token
    group = session.get(f"{server.url}/api/v4/groups/team").json()
    project = session.post(
        f"{server.url}/api/v4/projects", data={"path": "fresh", "namespace_id": group["id"]}
    ).json()
    upload_url = f"{server.url}/api/v4/projects/{project['id']}/packages/pypi"
    group_index = f"{server.url}/api/v4/groups/team/-/packages/pypi/simple/"
    listed, processed = [], []
    for index in range(uploads):
        name = f"fresh-pkg-{index}"
        filename, content = make_wheel(name, "1.0")
        response = session.post(upload_url, files={"content": (filename, content)},
                                data={"name": name, "version": "1.0"})  # fmt: skip
        assert response.status_code == 201, response.text
        accepted = time.perf_counter()
        seen = None
        while True:
            page = session.get(f"{group_index}{name}/", headers={"Accept": JSON})
            if page.ok:
                seen = seen or time.perf_counter()
                if page.json()["files"][0]["core-metadata"]:
                    break
            time.sleep(0.005)
        listed.append(seen - accepted)
        processed.append(time.perf_counter() - accepted)
    return {
        "packages_in_group": float(group_size(session, group_index)),
        "listed_median_s": statistics.median(listed),
        "listed_p95_s": percentile(listed, 0.95),
        "processed_median_s": statistics.median(processed),
        "processed_p95_s": percentile(processed, 0.95),
        "group_root_get_median_ms": timed_get(session, group_index) * 1000,
        "group_detail_get_median_ms": timed_get(session, f"{group_index}fresh-pkg-0/") * 1000,
    }


def group_size(session: requests.Session, group_index: str) -> int:
    return len(session.get(group_index, headers={"Accept": JSON}).json()["projects"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, nargs="+", default=[100, 5000])
    parser.add_argument("--uploads", type=int, default=100)
    args = parser.parse_args()
    results = {str(n): run(n, args.uploads) for n in args.packages}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
