"""Which WSGI server serves Packyard fastest here: the numbers behind ``packyard serve``.

    make bench-servers        # .venv/bin/python bench/servers.py [--seconds 5] [--rounds 2]

Restores the quick benchmark's loaded Packyard data (``bench/out/cache``; loaded afresh
when missing), then serves Packyard's WSGI app (``wsgi:app``) from each candidate server in
turn, on its own copy of that data, with the embedded worker off. Rounds alternate the
order. Per candidate and round it measures:

- ``wrk -t2 -c32`` on the 5-version page, the 200-version page, the root index of 2,000
  projects and the 5-version page with a reporter's token;
- sequential uploads of small wheels over one keep-alive connection (files/s, median ms);
- one streamed 45 MiB upload (MiB/s);
- memory at idle after the pages: PSS summed over the server's processes (shared pages
  counted once, so one process with threads and several forked workers compare fairly).

Writes ``bench/SERVERS.md`` and ``bench/out/servers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import requests
from upload_memory import descendants

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
CPUS = os.cpu_count() or 1
PAGES = {
    "p5": "project page, 5 versions",
    "p200": "project page, 200 versions",
    "root2000": "root index, 2,000 projects",
    "p5_token": "project page, 5 versions, with a token",
}


@dataclass(frozen=True)
class Candidate:
    key: str
    distribution: str
    settings: str
    argv: Callable[[int], list[str]]


def _packyard_uwsgi(port: int) -> list[str]:
    from app.serving import serve_command

    return serve_command("127.0.0.1", port, None)


# uWSGI exactly as `packyard serve` runs it; the others as their documentation recommends
# for a threaded WSGI app on this many cores.
CANDIDATES = (
    Candidate(
        "uwsgi",
        "pyuwsgi",
        f"as `packyard serve`: {min(CPUS, 8)} processes x 4 threads, thunder lock",
        _packyard_uwsgi,
    ),
    Candidate(
        "granian",
        "granian",
        f"{min(CPUS, 8)} workers x {2 * CPUS + 1} threads",
        lambda port: [
            str(BIN / "granian"), "--interface", "wsgi", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(min(CPUS, 8)),
            "--blocking-threads", str(2 * CPUS + 1), "--log-level", "warning", "wsgi:app",
        ],
    ),
    Candidate(
        "gunicorn",
        "gunicorn",
        f"{min(2 * CPUS, 8)} gthread workers x 4 threads, SO_REUSEPORT",
        lambda port: [
            str(BIN / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{port}",
            "--workers", str(min(2 * CPUS, 8)), "--worker-class", "gthread", "--threads", "4",
            "--reuse-port", "--log-level", "warning",
        ],
    ),
    Candidate(
        "pyruvate",
        "pyruvate",
        "1 process x 8 threads",
        lambda port: [
            str(BIN / "python"), "-c",
            f"import pyruvate, wsgi; pyruvate.serve(wsgi.app, '127.0.0.1:{port}', 8)",
        ],
    ),
    Candidate(
        "waitress",
        "waitress",
        "1 process x 8 threads",
        lambda port: [
            str(BIN / "waitress-serve"), "--listen", f"127.0.0.1:{port}", "--threads", "8",
            "wsgi:app",
        ],
    ),
)  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class Served:
    """One candidate serving a copy of the loaded Packyard data."""

    def __init__(self, candidate: Candidate, packyard: Any, work: Path, round_index: int) -> None:
        from harness.processes import Process, clean_env, free_port, wait_http

        self.candidate, self.packyard = candidate, packyard
        directory = work / f"{candidate.key}-{round_index}"
        shutil.rmtree(directory, ignore_errors=True)
        shutil.copytree(packyard.data, directory / "data")
        self.port = free_port()
        env = clean_env(
            PYTHONPATH=str(ROOT),
            PACKYARD_DATA_DIR=str(directory / "data"),
            PACKYARD_FORWARDING="false",
        )
        self.process = Process(candidate.argv(self.port), env, directory / "serve.log", cwd=ROOT)
        packyard.point_at(self.port)
        wait_http(self.process, f"{packyard.url}/-/ready")
        self.key = candidate.key

    # What harness.measure.big_upload needs of a target.
    def upload_endpoint(self) -> Any:
        return self.packyard.upload_endpoint()

    def web_pids(self) -> list[int]:
        """The server's processes: the one started and every one below it."""
        return [self.process.pid, *descendants(self.process.pid)]

    def stop(self) -> None:
        self.process.stop()


def measure_pages(served: Served, seconds: int) -> dict[str, dict[str, float]]:
    from harness.measure import check_page, wrk

    pages = served.packyard.pages()
    results = {}
    for key in PAGES:
        check_page(pages[key])
        results[key] = wrk(pages[key], seconds)
    return results


def measure_uploads(served: Served, dists: list[Any], root: Path) -> dict[str, float]:
    from harness.targets import post_dist

    endpoint = served.upload_endpoint()
    times = []
    with requests.Session() as session:
        for dist in dists:
            started = time.perf_counter()
            post_dist(session, endpoint, root, dist)
            times.append(time.perf_counter() - started)
    return {
        "files": len(dists),
        "files_per_s": len(dists) / sum(times),
        "median_ms": statistics.median(times) * 1000,
    }


def duplicate_reason(served: Served, dist: Any, root: Path) -> str:
    """The reason phrase of a repeated upload's 400: what twine shows the user."""
    from harness.targets import send_dist

    with requests.Session() as session:
        response = send_dist(session, served.upload_endpoint(), root, dist)
    if response.status_code != 400:
        raise RuntimeError(f"a repeated upload answered {response.status_code}, not 400")
    return response.reason


def measure_big(served: Served, dist: Any, root: Path) -> dict[str, float]:
    from harness.measure import big_upload

    return big_upload(served, root, dist)  # type: ignore[arg-type]


def upload_dists(root: Path, candidate: str, round_index: int, count: int) -> list[Any]:
    from harness.corpus import project

    versions = [f"{round_index + 1}.{index}" for index in range(count)]
    return project(root, "servers", f"servers-{candidate}", versions, sdist=False)


def big_dist(root: Path, candidate: str, round_index: int) -> Any:
    from harness.corpus import MIB, write

    from tests.dists import make_wheel

    payload = random.Random(f"servers-{candidate}-{round_index}").randbytes(45 * MIB)
    name, release = f"servers-big-{candidate}", f"{round_index + 1}.0"
    return write(root, "servers", *make_wheel(name, release, payload=payload), name, release)


def load_packyard(work: Path) -> Any:
    """Bench's quick-mode Packyard data (from its cache when there), served and stopped."""
    from harness import corpus as corpus_module
    from harness.targets import Packyard, Paths
    from run import ensure_peers

    out = BENCH / "out"
    peers_bin = ensure_peers()
    mode = corpus_module.MODES["quick"]
    corpus = corpus_module.load(out / "corpus" / mode.name, mode, peers_bin / "pip")
    paths = Paths(bin=BIN, peers_bin=peers_bin, src=ROOT, work=work)
    packyard = Packyard(paths, out / "cache")
    packyard.start()
    packyard.load(corpus)
    packyard.stop()
    return packyard


def measure(
    served: Served, args: argparse.Namespace, dists_root: Path, round_index: int
) -> dict[str, Any]:
    """Every measurement of one candidate in one round; a failed one is recorded, not fatal."""
    key = served.candidate.key
    dists = upload_dists(dists_root, key, round_index, args.uploads)
    steps: dict[str, Callable[[], Any]] = {
        "pages": lambda: measure_pages(served, args.seconds),
        "idle_pss_mib": lambda: time.sleep(1) or pss_mib(served.web_pids()),
        "uploads": lambda: measure_uploads(served, dists, dists_root),
        "duplicate_reason": lambda: duplicate_reason(served, dists[0], dists_root),
        "big": lambda: measure_big(served, big_dist(dists_root, key, round_index), dists_root),
    }
    measured: dict[str, Any] = {"errors": []}
    for name, step in steps.items():
        try:
            measured[name] = step()
        except Exception as exc:
            log(f"{key}: {name} failed: {exc}")
            measured["errors"].append(f"{name}: {str(exc).splitlines()[0][:300]}")
    return measured


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = BENCH / "out" / "servers"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log("loading Packyard's data (bench/out/cache)")
    packyard = load_packyard(work)
    dists_root = work / "dists"
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": CPUS,
        "seconds": args.seconds,
        "uploads": args.uploads,
        "candidates": {c.key: {"version": version(c.distribution), "settings": c.settings,
                               "rounds": []} for c in CANDIDATES},
    }  # fmt: skip
    for round_index in range(args.rounds):
        order = CANDIDATES if round_index % 2 == 0 else CANDIDATES[::-1]
        for candidate in order:
            log(f"round {round_index + 1}: {candidate.key}")
            served = Served(candidate, packyard, work, round_index)
            try:
                measured = measure(served, args, dists_root, round_index)
            finally:
                served.stop()
            results["candidates"][candidate.key]["rounds"].append(measured)
    shutil.rmtree(dists_root, ignore_errors=True)
    return results


# --- the report -------------------------------------------------------------------------


def median(rounds: list[dict[str, Any]], *keys: str) -> float | None:
    """The median of a figure over the rounds that measured it (None: none did)."""
    values = []
    for entry in rounds:
        for key in keys:
            entry = entry.get(key) if isinstance(entry, dict) else None
        if entry is not None:
            values.append(float(entry))
    return statistics.median(values) if values else None


def _reason_cell(rounds: list[dict[str, Any]]) -> str:
    reasons = [entry["duplicate_reason"] for entry in rounds if "duplicate_reason" in entry]
    if not reasons:
        return "failed"
    shown = "already exists" in reasons[-1]
    return f'{"yes" if shown else "**no**"}: "{reasons[-1][:40]}"'


def render(results: dict[str, Any]) -> str:
    candidates = results["candidates"]
    keys = list(candidates)
    header = "| | " + " | ".join(f"{k} {candidates[k]['version']}" for k in keys) + " |"
    rule = "|---" * (len(keys) + 1) + "|"

    def row(label: str, *path: str, fmt: str = "{:,.0f}") -> str:
        figures = [median(candidates[k]["rounds"], *path) for k in keys]
        cells = ["failed" if figure is None else fmt.format(figure) for figure in figures]
        return f"| {label} | " + " | ".join(cells) + " |"

    lines = [
        "# WSGI servers for Packyard",
        "",
        f"Written by `make bench-servers` on {results['started_at']} ({results['cpus']} CPUs): "
        "Packyard's `wsgi:app` on each server, the quick benchmark's data, embedded worker off, "
        f"`wrk -t2 -c32 -d{results['seconds']}s`; medians of the rounds (alternating order). "
        "Raw figures: `bench/out/servers.json`.",
        "",
        "Settings: "
        + "; ".join(f"{k}: {candidates[k]['settings']}" for k in keys)
        + ".",
        "",
        header,
        rule,
        *(row(f"{label}, requests/s", "pages", key, "rps")
          for key, label in PAGES.items()),
        *(row(f"{label}, p99 ms", "pages", key, "p99_ms", fmt="{:,.1f}")
          for key, label in list(PAGES.items())[:2]),
        row(f"{results['uploads']} sequential small uploads, files/s", "uploads", "files_per_s",
            fmt="{:,.1f}"),
        row("small upload, median ms", "uploads", "median_ms", fmt="{:,.1f}"),
        "| twine shows why a repeated upload failed (reason phrase) | "
        + " | ".join(_reason_cell(candidates[k]["rounds"]) for k in keys)
        + " |",
        row("45 MiB upload, MiB/s", "big", "mib_per_s"),
        row("45 MiB upload, peak RSS over idle, MiB", "big", "delta_rss_mib", fmt="{:,.1f}"),
        row("idle memory (PSS of all processes), MiB", "idle_pss_mib"),
        "",
    ]  # fmt: skip
    failures = [
        f"- {key}, round {index + 1}: {error}"
        for key in keys
        for index, entry in enumerate(candidates[key]["rounds"])
        for error in entry["errors"]
    ]
    if failures:
        lines += ["Failures:", "", *failures, ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=5, help="wrk's duration per page")
    parser.add_argument("--uploads", type=int, default=60)
    parser.add_argument("--results", type=Path, default=BENCH / "SERVERS.md")
    args = parser.parse_args()
    sys.path[:0] = [str(BENCH), str(ROOT)]
    results = run(args)
    (BENCH / "out" / "servers.json").write_text(json.dumps(results, indent=2))
    args.results.write_text(render(results))
    log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
