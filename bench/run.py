"""Packyard against pypiserver and devpi (and nginx and a trivial Flask route as ceilings).

Starts every server on loopback ports, loads the same corpus into each, runs the
measurements in two rounds with the targets in alternating order, then writes
``bench/RESULTS.md`` and ``bench/out/results.json``. ``make bench`` runs it (quick mode,
under 5 minutes); ``make bench BENCH_MODE=full`` runs the longer mode (under 20).

    .venv/bin/python bench/run.py [--mode quick|full] [--src DIR]

``--src`` serves Packyard from another source tree (a ``git worktree`` snapshot, say)
with this venv's packages. The peers live in ``bench/.venv-peers`` (created here from
``bench/peers-requirements.txt``); nginx and wrk come from Debian.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
PEERS_VENV = BENCH / ".venv-peers"
PEERS_REQUIREMENTS = BENCH / "peers-requirements.txt"
ORDER = ("packyard", "packyard_pg", "pypiserver", "devpi", "nginx", "trivial", "null")
TWINE_SETS = {"twine": "100 files", "twine400": "400 files of one project"}
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("quick", "full"), default="quick")
    parser.add_argument("--src", type=Path, default=ROOT, help="Packyard source tree to serve")
    parser.add_argument("--out", type=Path, default=BENCH / "out")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--corpus-only", action="store_true", help="generate the corpus, print where, and stop"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="load every server afresh (ignore bench/out/cache)"
    )
    return parser.parse_args()


# --- set-up -----------------------------------------------------------------------------


def ensure_peers() -> Path:
    """bench/.venv-peers with the peers-requirements installed (again when they change)."""
    from harness.processes import clean_env

    stamp = PEERS_VENV / ".requirements-sha256"
    wanted = hashlib.sha256(PEERS_REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return PEERS_VENV / "bin"
    log(f"installing the peers into {PEERS_VENV.relative_to(ROOT)}")
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(PEERS_VENV)], check=True)
    pip = [str(PEERS_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check"]  # fmt: skip
    subprocess.run([*pip, "--upgrade", "pip"], env=clean_env(), check=True)
    subprocess.run([*pip, "-r", str(PEERS_REQUIREMENTS)], env=clean_env(), check=True)
    stamp.write_text(wanted)
    return PEERS_VENV / "bin"


def check_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing: {', '.join(missing)} (`make bench` installs them from Debian)")


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    os_name = "unknown"
    if Path("/etc/os-release").exists():
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{int(memory) / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "OS": os_name,
        "Python": platform.python_version(),
        "load average (1 min) at the start": load_average(),
    }


def load_average() -> str:
    """Other work on the machine skews every figure: RESULTS.md records it."""
    return Path("/proc/loadavg").read_text().split()[0]


def tool_versions(bins: dict[str, Path]) -> dict[str, str]:
    def first_line(*args: str) -> str:
        result = subprocess.run(args, capture_output=True, text=True)
        return (result.stdout or result.stderr).strip().splitlines()[0]

    from importlib.metadata import version

    return {
        "uWSGI (pyuwsgi; Packyard, trivial route)": version("pyuwsgi"),
        "wrk": first_line("wrk", "-v").split(" [")[0],
        "pip": first_line(str(bins["pip"]), "--version").split(" from ")[0],
        "uv": first_line(str(bins["uv"]), "--version"),
        "twine": first_line(str(bins["twine"]), "--version").split(" (")[0],
    }


# --- the run ----------------------------------------------------------------------------


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        from harness import corpus as corpus_module

        self.args = args
        self.mode = corpus_module.MODES[args.mode]
        self.errors: list[str] = []
        self.results: dict[str, Any] = {
            "mode": args.mode,
            "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "wrk": {},
            "twine": {},
            "big_upload": {},
            "dry_run": {"pip": {}, "uv": {}},
            "visibility": {},
            "page_bytes": {},
            "load": {},
            "memory": {},
        }

    def attempt(self, what: str, action: Callable[..., Any], *args: Any) -> Any:
        """Run one measurement; a failure is recorded and the run goes on."""
        try:
            return action(*args)
        except Exception as exc:
            log(f"FAILED {what}: {exc}")
            self.errors.append(f"{what}: {str(exc).splitlines()[0] if str(exc) else exc!r}")
            traceback.print_exc(file=sys.stderr)
            return None

    def order(self, round_index: int) -> list[Any]:
        ordered = [self.targets[key] for key in ORDER if key in self.targets]
        return ordered if round_index % 2 == 0 else ordered[::-1]

    def registries(self, round_index: int) -> list[Any]:
        return [t for t in self.order(round_index) if t.registry]

    def uploaders(self, round_index: int) -> list[Any]:
        """What twine uploads to: the registries, Packyard on PostgreSQL + Redis, and the
        no-op server that shows twine's own ceiling."""
        return [t for t in self.order(round_index) if t.registry or t.twine]

    def settle(self, timeout: float = 60) -> None:
        """Let Packyard's workers finish their backlog, so they do not run during
        measurements."""
        for key in ("packyard", "packyard_pg"):
            target = self.targets.get(key)
            left = target.settle(timeout) if target is not None else 0
            if left:
                what = f"{target.label}: {left} file(s) still processing after {timeout:.0f} s"
                log(what)
                self.errors.append(what)

    def execute(self) -> dict[str, Any]:
        from harness import corpus as corpus_module
        from harness.targets import Paths

        check_tools()
        if float(load_average()) > 0.5 * (os.cpu_count() or 1):
            log(f"warning: load average {load_average()}: other work will skew the figures")
        peers_bin = ensure_peers()
        self.bins = {"pip": peers_bin / "pip", "uv": VENV_BIN / "uv", "twine": VENV_BIN / "twine"}
        work = self.args.out / "run"
        log(f"removing the previous run's {work}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        paths = Paths(bin=VENV_BIN, peers_bin=peers_bin, src=self.args.src.resolve(), work=work)
        log(f"corpus ({self.mode.name} mode)")
        self.corpus = corpus_module.load(
            self.args.out / "corpus" / self.mode.name, self.mode, peers_bin / "pip"
        )
        self.dry_python = self._dry_target(work)
        self.targets: dict[str, Any] = {}
        try:
            self._start_registries(paths)
            self.settle()
            self._start_ceilings(paths)
            self._record_setup()
            self._warm_up()
            for round_index in range(self.args.rounds):
                self._round(round_index)
        finally:
            self._stop_all()
        return self._finish()

    def _stop_all(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not skip the clean-up
        for target in self.targets.values():
            try:
                target.stop()
            except Exception as exc:
                log(f"stopping {target.key}: {exc!r}")

    def _start_registries(self, paths: Any) -> None:
        """Packyard, pypiserver and devpi, started and loaded at the same time."""
        from harness.targets import Devpi, Packyard, PackyardServices, PypiServer

        cache = self.args.out / "cache"
        packyard_cache = cache if self.mode.name == "quick" and not self.args.fresh else None
        packyard = Packyard(paths, packyard_cache)
        registries = [packyard, PypiServer(paths), Devpi(paths, None if self.args.fresh else cache),
                      PackyardServices(paths)]  # fmt: skip
        self.targets.update({t.key: t for t in registries})
        log("starting Packyard, pypiserver and devpi, and loading the corpus into each")
        with ThreadPoolExecutor(len(registries)) as pool:
            list(pool.map(self._start_and_load, registries))
        if not packyard.from_cache:
            self.results["load"]["packyard"].update(
                upload_s=packyard.upload_s, processing_wait_s=packyard.processing_wait_s
            )

    def _dry_target(self, work: Path) -> Path:
        """An empty environment for the dry runs (nothing already installed)."""
        target = work / "dry-target"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
        return target / "bin" / "python"

    def _start_and_load(self, target: Any) -> None:
        started = time.monotonic()
        target.start()
        target.load(self.corpus)
        seconds = time.monotonic() - started
        cached = getattr(target, "from_cache", False)
        files = len(self.corpus.index_100) + len(self.corpus.files("large", "real"))
        self.results["load"][target.key] = {"files": files, "seconds": seconds, "cached": cached}
        log(f"{target.label} loaded in {seconds:.0f} s{' (from the cache)' if cached else ''}")

    def _start_ceilings(self, paths: Any) -> None:
        import requests
        from harness.targets import Nginx, NullUpload, TrivialRoute

        pages = self.targets["packyard"].pages()
        saved = {key: requests.get(pages[key].url, timeout=30).content for key in ("p5", "p200")}
        ceilings = [Nginx(paths, saved), TrivialRoute(paths, saved), NullUpload(paths)]
        for target in ceilings:
            self.targets[target.key] = target
            target.start()

    def _record_setup(self) -> None:
        from harness.measure import check_page

        self.targets["packyard"].save_pages(self.args.out / "run" / "packyard" / "pages.json")
        versions = {t.key: t.version() for t in self.targets.values()}
        versions.update(tool_versions(self.bins))
        self.results["versions"] = versions
        self.results["machine"] = machine()
        for target in self.targets.values():
            for page_key, page in target.pages().items():
                size = self.attempt(f"GET {page_key} on {target.key}", check_page, page)
                if size is not None:
                    self.results["page_bytes"].setdefault(page_key, {})[target.key] = size

    def _warm_up(self) -> None:
        """A second of wrk per target (every worker process) and a few GETs of every page,
        so that first-request costs (imports, caches, connections) are not measured."""
        from harness.measure import check_page, wrk

        log("warming up")
        for target in self.order(0):
            pages = list(target.pages().values())
            if not pages:  # the upload-only targets
                continue
            self.attempt(f"warm-up {pages[0].url}", wrk, pages[0], 1)
            for page in pages[1:] * 5:
                self.attempt(f"warm-up {page.url}", check_page, page)

    def _round(self, round_index: int) -> None:
        phases = (self._memory, self._pages, self._twine, self._big, self._dry_runs,
                  self._visibility)  # fmt: skip
        for phase in phases:
            log(f"round {round_index + 1}: {phase.__doc__}")
            phase(round_index)

    def _memory(self, round_index: int) -> None:
        """idle memory (PSS of each registry's process tree)"""
        from harness.measure import tree_pss

        time.sleep(2)  # the previous phase's last requests and tasks end
        for target in self.registries(round_index):
            self._store(
                "memory", target.key, self.attempt(f"PSS of {target.key}", tree_pss, target)
            )

    def _pages(self, round_index: int) -> None:
        """wrk on every page"""
        from harness.measure import wrk

        page_keys = dict.fromkeys(k for t in self.order(0) for k in t.pages())
        for page_key in page_keys:
            for target in self.order(round_index):
                page = target.pages().get(page_key)
                if page is not None:
                    what = f"wrk {page_key} on {target.key}"
                    result = self.attempt(what, wrk, page, self.mode.wrk_seconds)
                    if result:
                        self._add("wrk", page_key, target.key, result)

    def _twine(self, round_index: int) -> None:
        """twine upload (100 files, then 400 files of one project)"""
        from harness.measure import twine_upload

        for corpus_set in TWINE_SETS:
            dists = self.corpus.files(f"{corpus_set}_{round_index}")
            for target in self.uploaders(round_index):
                what = f"twine upload of {corpus_set}_{round_index} to {target.key}"
                args = (target, self.corpus.root, dists, self.bins["twine"])
                result = self.attempt(what, twine_upload, *args)
                if result:
                    self._add("twine", corpus_set, target.key, result)
                self.settle()  # the worker's backlog must not slow the next target
        self.settle()

    def _big(self, round_index: int) -> None:
        """45 MiB upload"""
        from harness.measure import big_upload

        for big in self.corpus.files(f"big_{round_index}"):
            for target in self.registries(round_index):
                what = f"45 MiB upload to {target.key}"
                result = self.attempt(what, big_upload, target, self.corpus.root, big)
                self._store("big_upload", target.key, result)
                self.settle()

    def _dry_runs(self, round_index: int) -> None:
        """pip and uv dry runs"""
        from harness.measure import dry_run

        for tool in ("pip", "uv"):
            for target in self.registries(round_index) * self.mode.dry_runs:
                what = f"{tool} dry run against {target.key}"
                result = self.attempt(what, dry_run, tool, target, self.bins, self.dry_python)
                if result:
                    self.results["dry_run"][tool].setdefault(target.key, []).append(result)

    def _visibility(self, round_index: int) -> None:
        """upload-to-visibility"""
        from harness.measure import visibility

        uploads = self.mode.visibility_uploads
        for target in self.registries(round_index):
            what = f"visibility on {target.key}"
            result = self.attempt(what, visibility, target, round_index, uploads)
            if result:
                into = self.results["visibility"].setdefault(
                    target.key, {"listed_s": [], "processed_s": []}
                )
                for key in into:
                    into[key] += result[key]
            self.settle()

    def _add(self, table: str, page: str, target: str, result: dict[str, Any]) -> None:
        self.results[table].setdefault(page, {}).setdefault(target, []).append(result)

    def _store(self, table: str, target: str, result: dict[str, Any] | None) -> None:
        if result:
            self.results[table].setdefault(target, []).append(result)

    def _finish(self) -> dict[str, Any]:
        from harness import corpus, measure, report

        results = self.results
        results["duration_s"] = time.monotonic() - STARTED
        results.setdefault("machine", {})["load average (1 min) at the end"] = load_average()
        results["settings"] = {
            "rounds": self.args.rounds,
            "wrk_threads": measure.WRK_THREADS,
            "wrk_connections": measure.WRK_CONNECTIONS,
            "wrk_seconds": self.mode.wrk_seconds,
            "twine_sets": {
                label: len(self.corpus.files(f"{key}_0")) for key, label in TWINE_SETS.items()
            },
            "visibility_uploads_per_round": self.mode.visibility_uploads,
            "dry_run_requirements": list(corpus.DRY_RUN_REQUIREMENTS),
            "files_loaded": {k: len(v) for k, v in self.corpus.sets.items()},
        }
        results["errors"] = self.errors
        results["notes"] = notes(self.corpus, results["load"])
        results["summary"] = report.summarize(results)
        results["targets"] = report.targets(results["summary"])
        return results


def notes(corpus: Any, load: dict[str, dict[str, Any]]) -> list[str]:
    counts = {k: len(v) for k, v in corpus.sets.items()}
    loading = []
    for key, how in (("packyard", "HTTP uploads, 6 at a time"), ("devpi", "HTTP uploads, 4 at "
                     "a time"), ("pypiserver", "files copied, then started")):  # fmt: skip
        figures = load.get(key)
        if not figures:
            continue
        if figures.get("cached"):
            loading.append(
                f"{key}: from the cache of an earlier load in {figures['seconds']:.0f} s"
            )
            continue
        seconds = figures.get("upload_s", figures["seconds"])
        text = f"{key}: {figures['files']:,} files in {seconds:.0f} s ({how})"
        if "processing_wait_s" in figures:
            text += f", then {figures['processing_wait_s']:.0f} s until its worker processed them"
        loading.append(text)
    return [
        "Loading the corpus (all three at once, so they shared the CPUs; not a measurement): "
        + "; ".join(loading)
        + ".",
        f"Corpus: 100-project index = {counts['five']} + {counts['two_hundred']} + "
        f"{counts['small']} files; 2,000-project index = {counts['large']} files; "
        f"{counts['real']} real files from `pip download`.",
        "Packyard: `packyard serve` with its embedded defaults (SQLite, local files, embedded "
        "worker), `PACKYARD_FORWARDING=false` so that no request "
        "leaves the machine. Its group and projects are public; a reporter's token is used "
        "for the token rows. Quick mode starts it from a copy of a data directory that an "
        "earlier run loaded with the same corpus and migrations (`bench/out/cache`; "
        "`--fresh` reloads).",
        "pypiserver: one process per index (`-a . -P .`, `--disable-fallback`), files copied "
        "into its directories before it starts; uploads through its `/` endpoint.",
        "devpi: `devpi-init --no-root-pypi`, stage indexes without bases, plus an index "
        "inheriting from all three as the group index; uploads authenticate with the login "
        "token (with the password, devpi hashes it on every request).",
    ]


def make_corpus(args: argparse.Namespace) -> int:
    from harness import corpus

    mode = corpus.MODES[args.mode]
    loaded = corpus.load(args.out / "corpus" / mode.name, mode, ensure_peers() / "pip")
    for name, dists in loaded.sets.items():
        print(f"{name:12s} {len(dists):5d} files, {sum(d.size for d in dists):>12,} bytes")
    print(f"in {loaded.root} (real packages in {loaded.root.parent / 'real'})")
    return 0


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupted)  # stop the servers on `kill` too
    args = parse_args()
    sys.path[:0] = [str(BENCH), str(args.src.resolve())]
    from harness import report

    if args.corpus_only:
        return make_corpus(args)
    results = Run(args).execute()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    args.results.write_text(report.render(results))
    log(f"wrote {args.results} and {args.out / 'results.json'}")
    met = sum(goal["met"] for goal in results["targets"])
    log(f"targets met: {met} of {len(results['targets'])}; errors: {len(results['errors'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
