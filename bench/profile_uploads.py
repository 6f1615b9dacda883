"""Where a twine upload's time goes on the running server, measured from outside.

Starts ``packyard serve`` with its defaults (SQLite, local files, embedded worker; with
``--services``: PostgreSQL + Redis as ``make bench`` runs them), creates a group and a
project, and runs real twine over the bench's two sets (100 files of 50 projects, 400
files of one project), fresh names each round. Per set it reports:

- files/s (twine's wall time, start-up included);
- CPU per uploaded file in the process tree from /proc (uWSGI's router and web
  processes, the embedded worker), counted until the worker has processed every file;
- the server's own time per request (uWSGI's access log, ``%(msecs)``);
- how long the worker took, after twine's end, to process the last file;
- the load average.

    .venv/bin/python bench/profile_uploads.py [--rounds 3] [--services] [--src DIR]

``--src`` serves another Packyard tree (a ``main`` worktree, say) with the same twine:
interleave two such runs for an A/B comparison.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--services", action="store_true", help="PostgreSQL + Redis")
    parser.add_argument("--src", type=Path, default=BENCH.parent, help="Packyard source tree")
    parser.add_argument("--sets", nargs="*", default=["twine", "twine400"])
    return parser.parse_args()


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids`` (processes that ended meanwhile count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def main() -> int:
    args = parse_args()
    sys.path[:0] = [str(BENCH), str(args.src.resolve())]
    from harness.corpus import MODES, twine_sets
    from harness.measure import twine_upload
    from harness.processes import cmdline
    from harness.targets import Packyard, PackyardServices, Paths
    from upload_memory import descendants

    work = Path(tempfile.mkdtemp(prefix="profile-uploads-"))
    paths = Paths(bin=VENV_BIN, peers_bin=BENCH / ".venv-peers" / "bin",
                  src=args.src.resolve(), work=work)  # fmt: skip
    log = work / "access.log"
    target = PackyardServices(paths) if args.services else Packyard(paths, None)
    services = target.services
    target.services = lambda: {**services(), "PACKYARD_ACCESS_LOG": str(log)}  # type: ignore[method-assign]
    target.start()
    if args.services:
        target.load(None)  # type: ignore[arg-type]
    else:
        target._launch()
        target.admin_token = target._admin_token()
        target._create_namespaces()
    twine = VENV_BIN / "twine"
    projects = MODES["quick"].twine_projects  # the sets make bench uploads
    results: dict[str, list[dict[str, float]]] = {name: [] for name in args.sets}
    try:
        for round_index in range(args.rounds):
            for name in args.sets:
                root = work / "corpus"
                dists = twine_sets(root, round_index, projects, prefix="up")[name]
                tree = descendants(target.processes[0].pid)
                worker = [pid for pid in tree if "celery" in cmdline(pid)]
                web = [pid for pid in tree if pid not in worker]
                before = cpu_seconds(web), cpu_seconds(worker)
                lines_before = len(log.read_text().splitlines()) if log.exists() else 0
                load = os.getloadavg()[0]
                result = twine_upload(target, root, dists, twine)
                during = cpu_seconds(web), cpu_seconds(worker)
                settle_started = time.monotonic()
                target.settle(timeout=300)
                settle_s = time.monotonic() - settle_started
                after = cpu_seconds(web), cpu_seconds(worker)
                msecs = [
                    int(m.group(1))
                    for line in log.read_text().splitlines()[lines_before:]
                    if "POST" in line and (m := re.search(r" (\d+)ms$", line))
                ]
                n = len(dists)
                row = {
                    "files_per_s": result["files_per_s"],
                    "web_ms_during": (during[0] - before[0]) * 1000 / n,
                    "web_ms": (after[0] - before[0]) * 1000 / n,  # with the settle's polls
                    "worker_ms_during": (during[1] - before[1]) * 1000 / n,
                    "worker_ms": (after[1] - before[1]) * 1000 / n,
                    "server_ms": statistics.median(msecs) if msecs else 0.0,
                    "settle_s": settle_s,
                    "load": load,
                }
                results[name].append(row)
                print(name, round_index, " ".join(f"{k}={v:.2f}" for k, v in row.items()),
                      flush=True)  # fmt: skip
    finally:
        target.stop()
    for name, rows in results.items():
        medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print("median", name, " ".join(f"{k}={v:.2f}" for k, v in medians.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
