"""Medians, the issue's targets (met or not), and RESULTS.md, all from results.json."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import Any

PEERS = ("pypiserver", "devpi")
COLUMNS = ("packyard", "pypiserver", "devpi", "nginx", "trivial")
LABELS = {
    "packyard": "Packyard",
    "pypiserver": "pypiserver",
    "devpi": "devpi",
    "nginx": "nginx (static)",
    "trivial": "Flask trivial route",
    "packyard_pg": "Packyard (PostgreSQL + Redis)",
    "null": "no-op server (twine alone)",
}
UPLOAD_COLUMNS = ("packyard", "packyard_pg", "pypiserver", "devpi", "null")
TWINE_SETS = {"twine": "100 files", "twine400": "400 files of one project"}
PAGES = {
    "p5": "project page, 5 versions",
    "p5_token": "project page, 5 versions, with a token",
    "p200": "project page, 200 versions",
    "root100": "root index, 100 projects",
    "root2000": "root index, 2,000 projects",
    "group_p5": "group index: project page, 5 versions",
    "group_p5_token": "group index: project page, 5 versions, with a token",
    "group_root": "group index: root (2,100+ projects)",
}
MISSING = float("nan")


def median(values: list[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else MISSING


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return MISSING
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def med(rounds: list[dict[str, Any]] | None, key: str) -> float:
    return median([r[key] for r in rounds or [] if key in r])


# --- the summary ------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds for every table; what the targets and RESULTS.md read."""
    wrk = {
        page: {target: med(rounds, "rps") for target, rounds in by_target.items()}
        for page, by_target in results["wrk"].items()
    }
    big = {
        t: {
            k: med(r, k)
            for k in ("seconds", "mib_per_s", "idle_rss_mib", "peak_rss_mib", "delta_rss_mib")
        }
        for t, r in results["big_upload"].items()
    }
    dry = {
        tool: {
            t: {
                k: med(r, k)
                for k in (
                    "seconds",
                    "client_cpu_s",
                    "waiting_s",
                    "bytes",
                    "connections",
                    "would_install",
                )
            }
            for t, r in by_target.items()
        }
        for tool, by_target in results["dry_run"].items()
    }
    twine = {
        corpus_set: {t: med(r, "files_per_s") for t, r in by_target.items()}
        for corpus_set, by_target in results["twine"].items()
    }
    visibility = {
        t: {
            "listed_median_s": median(v["listed_s"]),
            "listed_p95_s": percentile(v["listed_s"], 0.95),
            "processed_median_s": median(v["processed_s"]),
            "processed_p95_s": percentile(v["processed_s"], 0.95),
            "samples": len(v["listed_s"]),
        }
        for t, v in results["visibility"].items()
    }
    memory = {
        t: {k: med(r, k) for k in ("pss_mib", "processes")}
        for t, r in results.get("memory", {}).items()
    }
    return {
        "wrk": wrk,
        "big_upload": big,
        "dry_run": dry,
        "twine": twine,
        "visibility": visibility,
        "memory": memory,
    }


def _best_peer(values: dict[str, float], better: Callable[..., float] = max) -> float:
    found = [values[p] for p in PEERS if p in values and not math.isnan(values[p])]
    return better(found) if found else MISSING


def _ok(condition: bool | None) -> bool:
    return bool(condition)


Check = tuple[str, float, float, str]  # label, value, bound, comparison


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) else MISSING


def _rps(summary: dict[str, Any], page: str, target: str = "packyard") -> float:
    return summary["wrk"].get(page, {}).get(target, MISSING)


def _peer_rps(summary: dict[str, Any], page: str) -> float:
    return _best_peer(summary["wrk"].get(page, {}))


def _five_versions(s: dict[str, Any]) -> list[Check]:
    p5 = _rps(s, "p5")
    return [
        ("x faster peer", _ratio(p5, _peer_rps(s, "p5")), 5.0, ">="),
        ("of trivial route", _ratio(p5, _rps(s, "p5", "trivial")), 0.7, ">="),
    ]


def _two_hundred_versions(s: dict[str, Any]) -> list[Check]:
    p200 = _rps(s, "p200")
    return [
        ("x faster peer", _ratio(p200, _peer_rps(s, "p200")), 30.0, ">="),
        ("5-version / 200-version", _ratio(_rps(s, "p5"), p200), 1.3, "<="),
    ]


def _root_index(s: dict[str, Any]) -> list[Check]:
    r2000 = _rps(s, "root2000")
    return [
        ("x faster peer", _ratio(r2000, _peer_rps(s, "root2000")), 2.0, ">="),
        ("100 / 2,000 projects", _ratio(_rps(s, "root100"), r2000), 2.0, "<="),
    ]


def _big_upload(s: dict[str, Any]) -> list[Check]:
    big = s["big_upload"]
    mine = big.get("packyard", {})
    fastest = _best_peer({t: v["mib_per_s"] for t, v in big.items()})
    return [
        ("MiB over idle", mine.get("delta_rss_mib", MISSING), 20.0, "<="),
        ("x faster peer's MiB/s", _ratio(mine.get("mib_per_s", MISSING), fastest), 1.0, ">="),
    ]


def _dry_runs(s: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    for tool, by_target in s["dry_run"].items():
        mine = by_target.get("packyard", {})
        fastest = _best_peer({t: v["seconds"] for t, v in by_target.items()}, min)
        fewest = _best_peer({t: v["bytes"] for t, v in by_target.items()}, min)
        seconds, fetched = mine.get("seconds", MISSING), mine.get("bytes", MISSING)
        checks.append((f"{tool}: time / fastest peer", _ratio(seconds, fastest), 1.0, "<="))
        checks.append((f"{tool}: bytes / fewest of peers", _ratio(fetched, fewest), 1.0, "<"))
    return checks


def _twine(s: dict[str, Any]) -> list[Check]:
    """Files per second against the faster peer, per corpus and Packyard's two setups."""
    checks: list[Check] = []
    for corpus_set, label in TWINE_SETS.items():
        by_target = s["twine"].get(corpus_set, {})
        fastest = _best_peer(by_target)
        for key, setup in (("packyard", "embedded"), ("packyard_pg", "PostgreSQL + Redis")):
            ratio = _ratio(by_target.get(key, MISSING), fastest)
            checks.append((f"{label}, {setup}: x faster peer", ratio, 1.5, ">="))
    return checks


def _visibility(s: dict[str, Any]) -> list[Check]:
    mine = s["visibility"].get("packyard", {})
    return [
        ("median s", mine.get("listed_median_s", MISSING), 1.0, "<"),
        ("p95 s", mine.get("listed_p95_s", MISSING), 2.0, "<"),
    ]


def _connections(s: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    for tool, by_target in s["dry_run"].items():
        mine = by_target.get("packyard", {}).get("connections", MISSING)
        fewest = _best_peer({t: v["connections"] for t, v in by_target.items()}, min)
        checks.append((f"{tool}: connections - fewest of peers", mine - fewest, 0.0, "<="))
    return checks


def _of_nginx(s: dict[str, Any]) -> list[Check]:
    return [
        ("5 versions", _ratio(_rps(s, "p5"), _rps(s, "p5", "nginx")), 0.25, ">="),
        ("200 versions", _ratio(_rps(s, "p200"), _rps(s, "p200", "nginx")), 0.25, ">="),
        ("5 versions, token", _ratio(_rps(s, "p5_token"), _rps(s, "p5", "nginx")), 0.15, ">="),
    ]


def _memory(s: dict[str, Any]) -> list[Check]:
    pss = {t: v["pss_mib"] for t, v in s.get("memory", {}).items()}
    return [("PSS / devpi's", _ratio(pss.get("packyard", MISSING), pss.get("devpi", MISSING)),
             1.0, "<=")]  # fmt: skip


TARGETS = (
    (1, "5-version project page: >= 5x the faster peer and >= 70% of the trivial route",
     _five_versions),
    (2, "200-version page: >= 30x the faster peer, within 1.3x of Packyard's 5-version page",
     _two_hundred_versions),
    (3, "root index at 2,000 projects: >= 2x the faster peer; 100 vs 2,000 within 2x",
     _root_index),
    (4, "45 MiB upload: peak RSS within 20 MiB of idle; throughput >= the faster peer",
     _big_upload),
    (5, "pip and uv dry runs: no slower than the faster peer, fewer bytes (PEP 658)", _dry_runs),
    (6, "upload to group-index visibility: median < 1 s, p95 < 2 s", _visibility),
    (7, "keep-alive: pip and uv open no more connections than with the fewest of the peers",
     _connections),
    (8, "index pages: >= 25% of nginx-static on the 5- and 200-version pages, >= 15% with a "
     "token", _of_nginx),
    (9, "memory: the whole server's process tree, idle, PSS at most devpi's", _memory),
    (10, "twine uploads, 100 files and 400 of one project, embedded and on PostgreSQL + "
         "Redis: >= 1.5x the faster peer's files/s (issue 19)", _twine),
)  # fmt: skip


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The issues' targets, each with its figures and whether it is met."""
    return [_target(number, text, checks(summary)) for number, text, checks in TARGETS]


def _target(number: int, text: str, checks: list[Check]) -> dict[str, Any]:
    compare = {
        ">=": lambda a, b: a >= b,
        "<=": lambda a, b: a <= b,
        "<": lambda a, b: a < b,
    }
    rows = []
    for label, value, bound, op in checks:
        met = not math.isnan(value) and compare[op](value, bound)
        rows.append({"check": label, "value": value, "bound": f"{op} {bound:g}", "met": met})
    return {
        "number": number,
        "target": text,
        "checks": rows,
        "met": all(r["met"] for r in rows) and bool(rows),
    }


# --- markdown ---------------------------------------------------------------------------


def fmt(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def mark(met: bool) -> str:
    return "✓" if met else "✗"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def render(results: dict[str, Any]) -> str:
    goals, settings = results["targets"], results["settings"]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` ({results['mode']} mode, {settings['rounds']} rounds, targets in "
        f"alternating order) on {results['started_at']}; took {results['duration_s']:.0f} s. "
        "Figures are medians over the rounds. Raw figures: `bench/out/results.json`.",
        "",
        "## Targets",
        "",
    ]
    rows = []
    for goal in goals:
        checks = "; ".join(
            f"{c['check']} {fmt(c['value'], 2)} ({c['bound']}) {mark(c['met'])}"
            for c in goal["checks"]
        )
        rows.append([str(goal["number"]), goal["target"], checks, mark(goal["met"])])
    lines += _table(["#", "target", "figures", "met"], rows)
    lines += _pages(results)
    lines += _uploads(results)
    lines += _memory_table(results)
    lines += _dry_runs(results)
    lines += _visibility(results)
    lines += _machine(results)
    if results.get("errors"):
        lines += ["## Errors", ""] + [f"- {e}" for e in results["errors"]] + [""]
    return "\n".join(lines)


def _pages(results: dict[str, Any]) -> list[str]:
    settings, summary = results["settings"], results["summary"]
    lines = [
        "## Index pages: requests/s",
        "",
        f"`wrk -t{settings['wrk_threads']} -c{settings['wrk_connections']} "
        f"-d{settings['wrk_seconds']}s` per page, target and round, on the same machine as the "
        "servers (wrk takes CPU too). nginx serves Packyard's own pages saved as files; the "
        "trivial route answers the same pages' bytes from one Flask view on Packyard's "
        "uWSGI settings: the framework ceiling, and how much of a bigger page's cost is "
        "bytes on the wire rather than rendering. Anonymous unless the page says token (a "
        "reporter's `read_api` token in `PRIVATE-TOKEN`). Packyard p99 latency in the last column.",
        "",
    ]
    rows = []
    for page, label in PAGES.items():
        by_target = summary["wrk"].get(page, {})
        if not by_target:
            continue
        size = results["page_bytes"].get(page, {}).get("packyard")
        p99 = med(results["wrk"].get(page, {}).get("packyard"), "p99_ms")
        cells = [fmt(by_target.get(t, MISSING)) for t in COLUMNS]
        rows.append([label, *cells, fmt(size) if size else "n/a", f"{fmt(p99, 1)} ms"])
    header = ["page", *(LABELS[t] for t in COLUMNS), "Packyard page bytes", "Packyard p99"]
    lines += _table(header, rows)
    sizes = []
    for page, by_target in results["page_bytes"].items():
        sizes.append(f"{page}: " + ", ".join(f"{t} {b:,}" for t, b in by_target.items()))
    lines += ["Page sizes in bytes: " + "; ".join(sizes) + ".", ""]
    errors = [
        f"{page}/{target}: {sum(r['non_2xx'] + r['socket_errors'] for r in rounds)}"
        for page, by_target in results["wrk"].items()
        for target, rounds in by_target.items()
        if sum(r["non_2xx"] + r["socket_errors"] for r in rounds)
    ]
    if errors:
        lines += ["Non-2xx answers or socket errors during wrk: " + ", ".join(errors) + ".", ""]
    return lines


def _uploads(results: dict[str, Any]) -> list[str]:
    summary = results["summary"]
    twine_targets = {t for by_target in summary["twine"].values() for t in by_target}
    registries = [t for t in UPLOAD_COLUMNS if t in twine_targets or t in summary["big_upload"]]
    sizes = "; ".join(results["settings"]["twine_sets"])
    lines = [
        "## Uploads",
        "",
        f"twine: one `twine upload` of each set of small files (wheels and sdists: {sizes}) "
        "per target and round, wall time including twine's start-up; the no-op server reads "
        "each upload and answers 200 at once, so its column is twine's own ceiling on this "
        "machine. Packyard (PostgreSQL + Redis) is `packyard serve` on a new PostgreSQL "
        "database and a Redis database (127.0.0.1), holding no corpus. 45 MiB: streamed "
        "multipart uploads of wheels with incompressible payload (several per target and "
        "round, alternating, medians); RSS summed over the web processes (Packyard: its "
        "uWSGI master and workers, not the Celery worker), sampled every 10 ms (and VmHWM "
        "after a reset).",
        "",
    ]
    rows = [
        [
            f"twine, {label}, files/s",
            *(fmt(summary["twine"].get(key, {}).get(t, MISSING), 1) for t in registries),
        ]
        for key, label in TWINE_SETS.items()
    ]
    for key, label, digits in (
        ("seconds", "45 MiB upload, s", 2),
        ("mib_per_s", "45 MiB upload, MiB/s", 1),
        ("idle_rss_mib", "web RSS idle, MiB", 1),
        ("peak_rss_mib", "web RSS peak, MiB", 1),
        ("delta_rss_mib", "peak - idle, MiB", 1),
    ):
        rows.append(
            [
                label,
                *(
                    fmt(summary["big_upload"].get(t, {}).get(key, MISSING), digits)
                    for t in registries
                ),
            ]
        )
    return lines + _table(["", *(LABELS[t] for t in registries)], rows)


def _memory_table(results: dict[str, Any]) -> list[str]:
    memory = results["summary"].get("memory", {})
    registries = [t for t in COLUMNS if t in memory]
    lines = [
        "## Memory",
        "",
        "Idle, at the start of each round: the PSS (proportional set size, from "
        "`/proc/PID/smaps_rollup`) of every process the server started, summed, so that "
        "pages forked processes share count once. Packyard: `packyard serve` with its "
        "defaults (supervisor, uWSGI master, HTTP router, web processes, embedded worker).",
        "",
    ]
    rows = [
        ["process tree PSS, MiB", *(fmt(memory[t]["pss_mib"], 1) for t in registries)],
        ["processes", *(fmt(memory[t]["processes"]) for t in registries)],
    ]
    return lines + _table(["", *(LABELS[t] for t in registries)], rows)


def _dry_runs(results: dict[str, Any]) -> list[str]:
    summary = results["summary"]["dry_run"]
    requirements = " ".join(results["settings"]["dry_run_requirements"])
    lines = [
        "## pip and uv: install --dry-run",
        "",
        f"`pip install --dry-run --no-cache-dir` and `uv pip install --dry-run --no-cache` of "
        f"`{requirements}` into an empty environment, index = the target's `misc` index (real "
        "wheels and sdists from `pip download`). Bytes: everything the server sent, counted by "
        "a TCP relay in front of it (headers included). Client CPU: user + system time of the "
        "client and its subprocesses; waiting: wall time minus that, i.e. the time the client "
        "spent on the network and the server (which shares the machine's two cores).",
        "",
    ]
    rows = []
    targets = [t for t in COLUMNS if any(t in v for v in summary.values())]
    for tool, by_target in summary.items():
        for key, label, scale, digits in (
            ("seconds", "s", 1, 2),
            ("client_cpu_s", "client CPU s", 1, 2),
            ("waiting_s", "waiting s", 1, 3),
            ("bytes", "KiB fetched", 1024, 1),
            ("connections", "connections", 1, 0),
            ("would_install", "would install", 1, 0),
        ):
            rows.append(
                [
                    f"{tool}: {label}",
                    *(fmt(by_target.get(t, {}).get(key, MISSING) / scale, digits) for t in targets),
                ]
            )
    return lines + _table(["", *(LABELS[t] for t in targets)], rows)


def _visibility(results: dict[str, Any]) -> list[str]:
    summary = results["summary"]["visibility"]
    lines = [
        "## Upload to visibility",
        "",
        "Seconds from an upload's 2xx answer to the file on the group-like index (Packyard: "
        "the group's JSON page for the name; devpi: an index inheriting from the uploaded one; "
        "pypiserver: its only index), polled every 5 ms. Packyard also: until the worker has "
        "extracted the metadata (`core-metadata` in the page).",
        "",
    ]
    rows = []
    targets = list(summary)
    for key, label in (
        ("listed_median_s", "listed, median s"),
        ("listed_p95_s", "listed, p95 s"),
        ("processed_median_s", "metadata served, median s"),
        ("processed_p95_s", "metadata served, p95 s"),
        ("samples", "uploads"),
    ):
        rows.append([label, *(fmt(summary[t][key], 3 if key != "samples" else 0) for t in targets)])
    return lines + _table(["", *(LABELS[t] for t in targets)], rows)


def _machine(results: dict[str, Any]) -> list[str]:
    machine, versions = results["machine"], results["versions"]
    rows = [[key, str(value)] for key, value in machine.items()]
    rows += [[LABELS.get(key, key), value] for key, value in versions.items()]
    lines = ["## Machine and versions", ""]
    lines += _table(["", ""], rows)
    notes = results.get("notes", [])
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return lines
