"""Where Packyard's time goes per index request, measured in-process.

Reads the data directory that the last ``make bench`` left behind
(``bench/out/run/packyard/data``, with the page list ``pages.json`` beside it), builds the
app with ``create_app()`` in this process and, for each page, reports:

- milliseconds per request through Flask's test client (no network, no WSGI server);
- SQL statements per request and the time spent in them (SQLAlchemy cursor events), with
  the statements of one request;
- the heaviest functions per request (cProfile): Packyard's own code by cumulative time,
  and everything by own time.

    .venv/bin/python bench/profile_packyard.py [--pages p5 p200] [--requests 300] [--src DIR]

For a live server instead, ``bench/.venv-peers/bin/py-spy record --subprocesses --pid PID``
on ``packyard serve`` while ``wrk`` runs gives the same picture with uWSGI included.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RUN = BENCH / "out" / "run" / "packyard"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=RUN / "data")
    parser.add_argument("--pages", nargs="*", help="page keys (default: all in pages.json)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--src", type=Path, default=BENCH.parent, help="Packyard source tree")
    return parser.parse_args()


class SqlLog:
    """Every statement the engine runs, with its duration."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = engine
        self.statements: list[tuple[float, str, Any]] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        duration = time.perf_counter() - conn.info["bench_started"]
        self.statements.append((duration, statement, parameters))

    def plan(self, statement: str, parameters: Any) -> list[str]:
        """SQLite's query plan for one statement (empty on other databases)."""
        if self.engine.dialect.name != "sqlite":
            return []
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
        return [row[-1] for row in rows]


def short_sql(statement: str) -> str:
    flat = " ".join(statement.split())
    head = flat.split(" FROM ")[0][:60]
    tables = flat.split(" FROM ", 1)[1].split(" WHERE ")[0][:70] if " FROM " in flat else ""
    where = flat.split(" WHERE ", 1)[1][:110] if " WHERE " in flat else ""
    return f"{head}... FROM {tables} WHERE {where}"


def profile_page(client: Any, sql: SqlLog, key: str, page: dict[str, Any], n: int, top: int):
    path, headers = page["path"], page["headers"]
    for _ in range(30):
        response = client.get(path, headers=headers)
    sql.statements.clear()
    client.get(path, headers=headers)
    one_request = list(sql.statements)
    sql.statements.clear()
    started = time.perf_counter()
    for _ in range(n):
        client.get(path, headers=headers)
    per_request = (time.perf_counter() - started) / n * 1000
    in_sql = sum(d for d, _, _ in sql.statements) / n * 1000
    print(f"\n## {key}: {response.status_code}, {len(response.data):,} bytes")
    print(f"{per_request:.2f} ms per request in-process; {len(one_request)} SQL statements, "
          f"{in_sql:.2f} ms in SQL (cursor execute + fetch not included)")  # fmt: skip
    for duration, statement, parameters in one_request:
        print(f"  {duration * 1000:6.3f} ms  {short_sql(statement)}")
        for step in sql.plan(statement, parameters):
            print(f"             plan: {step}")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        client.get(path, headers=headers)
    profiler.disable()
    print_profile(pstats.Stats(profiler), n, top)


def print_profile(stats: pstats.Stats, n: int, top: int) -> None:
    rows = stats.stats  # type: ignore[attr-defined]
    own_code = [
        (cumulative, calls, f"{Path(file).parent.name}/{Path(file).name}:{line} {name}")
        for (file, line, name), (calls, _prim, _own, cumulative, _callers) in rows.items()
        if "/site-packages/" not in file and ("/app/" in file or "/plugins/" in file)
    ]
    print(f"  Packyard functions, cumulative ms per request (under cProfile, top {top}):")
    for cumulative, calls, where in sorted(own_code, reverse=True)[:top]:
        print(f"    {cumulative / n * 1000:7.3f} ms  {calls / n:7.1f} calls  {where}")
    everything = [
        (own, calls, f"{Path(file).name}:{line} {name}")
        for (file, line, name), (calls, _prim, own, _cumulative, _callers) in rows.items()
    ]
    print(f"  all functions, own ms per request (top {top}):")
    for own, calls, where in sorted(everything, reverse=True)[:top]:
        print(f"    {own / n * 1000:7.3f} ms  {calls / n:7.1f} calls  {where}")


def main() -> int:
    args = parse_args()
    pages_file = args.data.parent / "pages.json"
    if not pages_file.exists():
        sys.exit(f"{pages_file} is missing: run `make bench` first")
    sys.path.insert(0, str(args.src.resolve()))
    os.environ["PACKYARD_DATA_DIR"] = str(args.data)
    os.environ["PACKYARD_FORWARDING"] = "false"
    from app import create_app
    from app.extensions import db

    app = create_app()
    with app.app_context():
        sql = SqlLog(db.engine)
    client = app.test_client()
    pages = json.loads(pages_file.read_text())
    for key in args.pages or pages:
        profile_page(client, sql, key, pages[key], args.requests, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
