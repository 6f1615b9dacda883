"""Packyard's pull-through cache against devpi's mirror, both on the same local upstream.

The upstream is a static PEP 503/691/658 index of the bench's real packages (wheels and
sdists of ``harness.corpus.REAL_PINS``: requests, jinja2, click, attrs, packaging and their
dependencies), served on loopback by ``tests/upstream.py``, as PyPI would serve them.
Packyard (``packyard serve``, instance mode ``cache``, a public group's index) and
devpi-server (a user index of type ``mirror``) both mirror it. pip and uv install the same
requirements through each into a fresh environment with no client cache:

- *cold*: the mirror holds nothing of them (both servers start on a fresh data directory,
  then serve a few other names, so that first-request costs are not measured);
- *warm*: the same install again, everything kept.

Each figure is the median of ``--rounds`` rounds (the targets alternate order); the bytes
are what the client received (a counting proxy). Writes ``bench/MIRROR.md`` and
``bench/out/mirror.json``. ``make bench`` runs it after ``bench/run.py``.

    .venv/bin/python bench/mirror.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT)]

from harness.corpus import DRY_RUN_REQUIREMENTS, fetch_real  # noqa: E402
from harness.processes import Process, clean_env, free_port, wait_http  # noqa: E402
from harness.proxy import CountingProxy, Exchange  # noqa: E402
from run import ensure_peers, load_average, log, machine  # noqa: E402

from tests.upstream import LiveUpstream, UpstreamTree  # noqa: E402

VENV_BIN = Path(sys.executable).parent
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
TOOLS = ("pip", "uv")
COLD_RATIO, WARM_RATIO, BYTES_RATIO = 1.3, 1.0, 1.0  # the targets


class PackyardMirror:
    key, label = "packyard", "Packyard"

    def __init__(self, work: Path, upstream_url: str) -> None:
        self.work, self.upstream_url = work, upstream_url
        self.process: Process | None = None

    def start_fresh(self) -> None:
        data = self.work / "packyard"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        self.port = free_port()
        env = clean_env(
            PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            PYTHONPATH=str(ROOT),
            PACKYARD_DATA_DIR=str(data),
            PACKYARD_UPSTREAM_URL=self.upstream_url,
            PACKYARD_UPSTREAM_MODE="cache",
        )
        serve = [str(VENV_BIN / "packyard"), "serve", "--port", str(self.port)]
        self.process = Process(serve, env, self.work / "packyard.log", cwd=data)
        wait_http(self.process, f"http://127.0.0.1:{self.port}/-/ready")
        token = self._admin_token()
        created = _post_json(
            f"http://127.0.0.1:{self.port}/api/v4/groups",
            {"path": "mirror", "visibility": "public"},
            {"PRIVATE-TOKEN": token},
        )
        self.index_path = f"/api/v4/groups/{created['id']}/-/packages/pypi/simple/"

    def _admin_token(self) -> str:
        assert self.process is not None
        for line in self.process.output().splitlines():
            if line.strip().startswith("pyd-pat-"):
                return line.strip()
        raise RuntimeError("no admin token in packyard serve's output")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


class DevpiMirror:
    key, label = "devpi", "devpi"

    def __init__(self, work: Path, upstream_url: str, peers_bin: Path) -> None:
        self.work, self.upstream_url, self.peers_bin = work, upstream_url, peers_bin
        self.process: Process | None = None

    def start_fresh(self) -> None:
        serverdir = self.work / "devpi"
        shutil.rmtree(serverdir, ignore_errors=True)
        subprocess.run(
            [str(self.peers_bin / "devpi-init"), "--serverdir", str(serverdir),
             "--root-passwd", "root", "--no-root-pypi"],
            env=clean_env(), check=True, capture_output=True,
        )  # fmt: skip
        self.port = free_port()
        url = f"http://127.0.0.1:{self.port}"
        args = [str(self.peers_bin / "devpi-server"), "--serverdir", str(serverdir),
                "--host", "127.0.0.1", "--port", str(self.port)]  # fmt: skip
        self.process = Process(args, clean_env(), self.work / "devpi.log", cwd=self.work)
        wait_http(self.process, f"{url}/+api")
        _put_json(f"{url}/bench", {"password": "bench", "email": "b@example.com"})
        token = _post_json(f"{url}/+login", {"user": "bench", "password": "bench"})
        auth = ("bench", token["result"]["password"])
        _put_json(f"{url}/bench/mirror", {"type": "mirror", "mirror_url": self.upstream_url}, auth)
        self.index_path = "/bench/mirror/+simple/"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def _post_json(url: str, data: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    import requests

    response = requests.post(url, json=data, headers=headers or {}, timeout=60)
    response.raise_for_status()
    return response.json()


def _put_json(url: str, data: dict[str, Any], auth: tuple[str, str] | None = None) -> None:
    import requests

    response = requests.put(url, json=data, auth=auth, timeout=60)
    response.raise_for_status()


def build_upstream(work: Path, peers_bin: Path) -> UpstreamTree:
    """The real packages as a static index (their wheels' METADATA served as PEP 658)."""
    real = fetch_real(BENCH / "out" / "corpus" / "real", peers_bin / "pip")
    tree = UpstreamTree(work / "upstream")
    for dist in real:
        path = (BENCH / "out" / "corpus" / "real" / Path(dist.filename).name).resolve()
        tree.add(dist.name, (path.name, path.read_bytes()))
    return tree


WARM_UP_NAMES = ("six", "pluggy")  # real packages outside the requirements' closure


def warm_up(target: Any) -> None:
    """Fetch other names through the fresh server, so that no process's first-request costs
    (imports, connections) are measured as the cold install's."""
    import requests

    for _ in range(4):
        for name in WARM_UP_NAMES:
            url = f"http://127.0.0.1:{target.port}{target.index_path}{name}/"
            page = requests.get(url, headers={"Accept": JSON_TYPE}, timeout=60)
            page.raise_for_status()
            for entry in page.json()["files"]:
                requests.get(urljoin(page.url, entry["url"]), timeout=60).raise_for_status()


def install(tool: str, target: Any, work: Path, peers_bin: Path) -> dict[str, Any]:
    """Install the requirements through ``target`` into a fresh environment, timed."""
    venv = work / f"venv-{time.monotonic_ns()}"
    subprocess.run([str(VENV_BIN / "uv"), "venv", "--python", sys.executable, str(venv)],
                   env=clean_env(), check=True, capture_output=True)  # fmt: skip
    python = venv / "bin" / "python"
    proxy = CountingProxy(target.port, read_http=True)
    index = f"http://127.0.0.1:{proxy.port}{target.index_path}"
    if tool == "pip":
        args = [str(peers_bin / "pip"), "--python", str(python), "install", "--no-cache-dir",
                "--disable-pip-version-check", "--index-url", index,
                *DRY_RUN_REQUIREMENTS]  # fmt: skip
    else:
        args = [str(VENV_BIN / "uv"), "pip", "install", "--no-cache", "--no-config",
                "--python", str(python), "--index-url", index, *DRY_RUN_REQUIREMENTS]  # fmt: skip
    started = time.perf_counter()
    result = subprocess.run(args, env=clean_env(), capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    proxy.close()
    shutil.rmtree(venv, ignore_errors=True)
    if result.returncode != 0:
        raise RuntimeError(f"{tool} through {target.key} failed:\n{result.stderr[-3000:]}")
    exchanges = proxy.exchanges
    if proxy.unreadable or sum(e.head_bytes + e.body_bytes for e in exchanges) != proxy.down:
        raise RuntimeError(f"the proxy could not read {tool}'s HTTP through {target.key}")
    return {
        "seconds": seconds,
        "bytes": proxy.down,
        "connections": proxy.connections,
        "classes": breakdown(exchanges),
        "asked_with": asked_with(exchanges),
    }


# What a response is, by what was asked and what came back.
CLASSES = ("pages", "metadata", "files", "other")


def response_class(exchange: Exchange) -> str:
    content_type = exchange.response_headers.get("content-type", "")
    if not 200 <= exchange.status < 300 and exchange.status != 304:
        return "other"  # redirects and errors
    if exchange.target.split("?")[0].rstrip("/").endswith(".metadata"):
        return "metadata"
    if content_type.startswith(("text/html", "application/vnd.pypi.simple")):
        return "pages"
    return "files" if exchange.status == 200 else "other"


def breakdown(exchanges: list[Exchange]) -> dict[str, dict[str, int]]:
    """Per response class: how many responses, and the bytes of their heads and bodies."""
    classes = {name: {"responses": 0, "head": 0, "body": 0} for name in CLASSES}
    for exchange in exchanges:
        counts = classes[response_class(exchange)]
        counts["responses"] += 1
        counts["head"] += exchange.head_bytes
        counts["body"] += exchange.body_bytes
    return classes


ASKED_WITH = ("accept", "accept-encoding")


def asked_with(exchanges: list[Exchange]) -> dict[str, dict[str, list[str]]]:
    """Per response class, the distinct request headers that matter to encoding, and the
    response headers that came back (names only), as the client sent and received them."""
    seen: dict[str, dict[str, set[str]]] = {}
    for exchange in exchanges:
        entry = seen.setdefault(response_class(exchange), {})
        for name in ASKED_WITH:
            entry.setdefault(name, set()).add(exchange.request_headers.get(name, ""))
        entry.setdefault("content-encoding", set()).add(
            exchange.response_headers.get("content-encoding", "")
        )
        entry.setdefault("response headers", set()).update(exchange.response_headers)
    return {cls: {k: sorted(v) for k, v in entry.items()} for cls, entry in seen.items()}


def measure(rounds: int, work: Path, peers_bin: Path, upstream: LiveUpstream) -> dict[str, Any]:
    targets = [PackyardMirror(work, upstream.url), DevpiMirror(work, upstream.url, peers_bin)]
    runs: dict[str, Any] = {
        tool: {t.key: {"cold": [], "warm": []} for t in targets} for tool in TOOLS
    }
    try:
        for round_index in range(rounds):
            ordered = targets if round_index % 2 == 0 else targets[::-1]
            for tool in TOOLS:
                for target in ordered:
                    target.stop()
                    target.start_fresh()
                    warm_up(target)
                    for phase in ("cold", "warm"):
                        figures = install(tool, target, work, peers_bin)
                        runs[tool][target.key][phase].append(figures)
                        log(f"round {round_index + 1} {tool} {phase} {target.key}: "
                            f"{figures['seconds']:.2f} s, {figures['bytes']:,} bytes")  # fmt: skip
    finally:
        for target in targets:
            target.stop()
    return runs


def summarize(runs: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for tool, by_target in runs.items():
        for key, phases in by_target.items():
            for phase, figures in phases.items():
                summary.setdefault(tool, {}).setdefault(phase, {})[key] = {
                    **{
                        name: statistics.median(f[name] for f in figures)
                        for name in ("seconds", "bytes")
                    },
                    "classes": _median_round(figures)["classes"],
                }
    return summary


def _median_round(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """The round of median bytes, so that its breakdown adds up to a real total."""
    middle = statistics.median_low(f["bytes"] for f in figures)
    return next(f for f in figures if f["bytes"] == middle)


def without_metadata(figures: dict[str, Any]) -> int:
    metadata = figures["classes"]["metadata"]
    return int(figures["bytes"] - metadata["head"] - metadata["body"])


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    goals = []
    for tool, phases in summary.items():
        for phase, limit in (("warm", WARM_RATIO), ("cold", COLD_RATIO)):
            ours, theirs = phases[phase]["packyard"], phases[phase]["devpi"]
            ratio = ours["seconds"] / theirs["seconds"]
            goals.append({"what": f"{tool}, {phase}: time at most {limit}x devpi's",
                          "ratio": ratio, "met": ratio <= limit})  # fmt: skip
        for phase in ("cold", "warm"):
            ours, theirs = phases[phase]["packyard"], phases[phase]["devpi"]
            ratio = ours["bytes"] / theirs["bytes"]
            goals.append({"what": f"{tool}, {phase}: bytes at most devpi's",
                          "ratio": ratio, "met": ratio <= BYTES_RATIO})  # fmt: skip
    return goals


def notes(results: dict[str, Any]) -> list[str]:
    """What the figures alone do not say: requests and connections behind them."""
    connections = {
        (tool, key): statistics.median(f["connections"] for f in phases["warm"])
        for tool, by_target in results["runs"].items()
        for key, phases in by_target.items()
    }
    pip = results["summary"]["pip"]
    metadata = {phase: pip[phase]["packyard"]["classes"]["metadata"] for phase in ("cold", "warm")}
    over = {
        phase: (pip[phase]["packyard"]["bytes"], pip[phase]["devpi"]["bytes"])
        for phase in ("cold", "warm")
    }
    return [
        "Packyard keeps every field of the upstream's pages, PEP 658 core metadata included; "
        "devpi's mirror drops it. So pip and uv fetch each candidate's `.metadata` from "
        "Packyard before its wheel (one more request per package), and from devpi they fetch "
        "wheels only. pip asks for metadata with `Accept-Encoding: identity` (pip's "
        "`network/utils.py` `HEADERS`, used for every download), so it gets the metadata "
        "uncompressed: "
        + "; ".join(
            f"{phase} {m['responses']} responses, {m['head'] + m['body']:,} bytes "
            f"({m['body']:,} of bodies), against Packyard's excess over devpi of "
            f"{over[phase][0] - over[phase][1]:,.0f}"
            for phase, m in metadata.items()
        )
        + ". "
        + (
            "Without them pip's bytes are at most devpi's (see the breakdown): the bytes "
            "target is missed by the metadata the issue requires, and by nothing else."
            if all(without_metadata(pip[p]["packyard"]) <= over[p][1] for p in over)
            else "Even without them pip's bytes are above devpi's (see the breakdown)."
        )
        + " uv asks for gzip and gets it.",
        "uv reads metadata from devpi by downloading wheels, then downloads them again to "
        "install: hence devpi's bytes with uv.",
        "Both keep connections alive (`packyard serve` through uWSGI's HTTP router). "
        "Warm connections: "
        + ", ".join(f"{tool} {key} {n:.0f}" for (tool, key), n in sorted(connections.items()))
        + ". Each new connection costs pip a little Python time.",
        "Other work on this shared machine moves single figures by 10-30 %: compare ratios "
        "within one run, and mind the load average below.",
    ]


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Pull-through cache: Packyard against devpi's mirror",
        "",
        f"Run {results['started_at']}, {results['rounds']} rounds, "
        f"{results['duration_s']:.0f} s. Written by `bench/mirror.py` (see its docstring).",
        "",
        f"Requirements: `{' '.join(DRY_RUN_REQUIREMENTS)}` and their dependencies, installed "
        "into a fresh environment with no client cache. The upstream is a local static index "
        f"of {results['upstream_files']} real files. Medians; bytes are what the client "
        "received.",
        "",
        "| tool | phase | Packyard s | devpi s | time ratio | Packyard bytes | devpi bytes "
        "| bytes ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, phases in results["summary"].items():
        for phase in ("cold", "warm"):
            ours, theirs = phases[phase]["packyard"], phases[phase]["devpi"]
            lines.append(
                f"| {tool} | {phase} | {ours['seconds']:.2f} | {theirs['seconds']:.2f} | "
                f"{ours['seconds'] / theirs['seconds']:.2f} | {ours['bytes']:,.0f} | "
                f"{theirs['bytes']:,.0f} | {ours['bytes'] / theirs['bytes']:.2f} |"
            )
    lines += breakdown_table(results)
    lines += ["", "## Targets", "", "| target | ratio | met |", "|---|---:|---|"]
    for goal in results["targets"]:
        lines.append(f"| {goal['what']} | {goal['ratio']:.2f} | {'yes' if goal['met'] else 'no'} |")
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in notes(results)]
    lines += ["", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in results["machine"].items()]
    return "\n".join(lines) + "\n"


def breakdown_table(results: dict[str, Any]) -> list[str]:
    """The bytes of the median round by response class (head + body: all bytes received),
    and the headers the clients sent for each class."""
    lines = [
        "",
        "## Bytes by response class",
        "",
        "Each class: every byte of its responses (status line, headers, body as sent). "
        "Headers and bodies: all classes. The last column leaves out the `.metadata` "
        "responses (PEP 658), which only Packyard serves.",
        "",
        "| tool | phase | server | responses | pages | `.metadata` | files | other "
        "| headers | bodies | total | without `.metadata` |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    comparisons = []
    for tool, phases in results["summary"].items():
        for phase in ("cold", "warm"):
            for key, label in (("packyard", "Packyard"), ("devpi", "devpi")):
                figures = phases[phase][key]
                classes = figures["classes"]
                cells = [f"{c['head'] + c['body']:,}" for c in classes.values()]
                lines.append(
                    f"| {tool} | {phase} | {label} | "
                    f"{sum(c['responses'] for c in classes.values())} | {' | '.join(cells)} | "
                    f"{sum(c['head'] for c in classes.values()):,} | "
                    f"{sum(c['body'] for c in classes.values()):,} | {figures['bytes']:,.0f} | "
                    f"{without_metadata(figures):,} |"
                )
            ours, theirs = phases[phase]["packyard"], phases[phase]["devpi"]
            comparisons.append(
                f"{tool} {phase} {without_metadata(ours) / theirs['bytes']:.3f} "
                f"({without_metadata(ours):,} against {theirs['bytes']:,.0f})"
            )
    lines += [
        "",
        "Packyard's bytes without its `.metadata` responses, against devpi's: "
        + "; ".join(comparisons)
        + ".",
        "",
        "What the clients asked with (request headers, all rounds), and the encoding that "
        "came back:",
        "",
        "| tool | class | Accept | Accept-Encoding | Content-Encoding from Packyard | from devpi |",
        "|---|---|---|---|---|---|",
    ]
    for tool, by_target in results["runs"].items():
        asked = {key: _merged_asked_with(phases) for key, phases in by_target.items()}
        for cls in CLASSES:
            ours, theirs = asked["packyard"].get(cls), asked["devpi"].get(cls)
            if ours is None and theirs is None:
                continue
            either = ours or theirs
            lines.append(
                f"| {tool} | {cls} | {_said(either, 'accept')} | "
                f"{_said(either, 'accept-encoding')} | {_said(ours, 'content-encoding')} | "
                f"{_said(theirs, 'content-encoding')} |"
            )
    return lines


def _said(entry: dict[str, list[str]] | None, name: str) -> str:
    if entry is None:
        return "(no such response)"
    return ", ".join(f"`{value}`" if value else "(no header)" for value in entry[name])


def _merged_asked_with(phases: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, list]]:
    merged: dict[str, dict[str, set[str]]] = {}
    for figures in (f for runs in phases.values() for f in runs):
        for cls, entry in figures["asked_with"].items():
            for name, values in entry.items():
                merged.setdefault(cls, {}).setdefault(name, set()).update(values)
    return {cls: {k: sorted(v) for k, v in entry.items()} for cls, entry in merged.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    parser.add_argument("--results", type=Path, default=BENCH / "MIRROR.md")
    args = parser.parse_args()
    started, load_at_start = time.monotonic(), load_average()
    peers_bin = ensure_peers()
    work = args.out / "mirror"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    tree = build_upstream(work, peers_bin)
    upstream = LiveUpstream(tree.root, free_port())
    try:
        runs = measure(args.rounds, work, peers_bin, upstream)
    finally:
        upstream.stop()
    summary = summarize(runs)
    results = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rounds": args.rounds,
        "duration_s": time.monotonic() - started,
        "upstream_files": sum(len(d) for d in tree.projects.values()),
        "runs": runs,
        "summary": summary,
        "targets": targets(summary),
        "machine": {
            **machine(),
            "load average (1 min) at the start": load_at_start,
            "load average (1 min) at the end": load_average(),
        },
    }
    (args.out / "mirror.json").write_text(json.dumps(results, indent=2))
    args.results.write_text(render(results))
    met = sum(goal["met"] for goal in results["targets"])
    log(f"wrote {args.results}; targets met: {met} of {len(results['targets'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
