"""Index pages per second of two or more Packyard source trees, interleaved.

A change that costs a few percent on the hot path (a middleware, say) is lost in the noise
of two ``make bench`` runs minutes apart. This serves the same data from each tree at the
same time (a copy of ``make bench``'s loaded corpus each, from ``bench/out/cache``, loaded
first if missing) and runs ``wrk`` on one page of one tree after the other, rotating the
order each round, so that every tree sees the same machine. It prints each tree's median
requests per second and its ratio to the first tree's.

    .venv/bin/python bench/index_ab.py --src /path/to/before --src . [--pages p5 p200]
        [--rounds 6] [--seconds 5]

Each tree is served with this venv's packages, as ``make bench --src`` does; the trees
must share the schema migrations (the cached data is keyed by them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

BENCH = Path(__file__).resolve().parent
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
VENV_BIN = Path(sys.executable).parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, action="append", required=True,
                        help="a Packyard source tree (give two or more)")  # fmt: skip
    parser.add_argument("--pages", nargs="+", default=["p5", "p200", "root100", "file"],
                        help="make bench's page keys, or file: a wheel's download")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    if len(args.src) < 2:
        parser.error("give --src at least twice")
    return args


def pages_of(target: Any) -> dict[str, Any]:
    """The bench's pages, and ``file``: the first file the 5-version page lists."""
    from harness.targets import Page

    pages = target.pages()
    listed = requests.get(pages["p5"].url, headers={"Accept": JSON_TYPE}, timeout=30).json()
    pages["file"] = Page(urljoin(pages["p5"].url, listed["files"][0]["url"]))
    return pages


def main() -> int:
    args = parse_args()
    trees = [src.resolve() for src in args.src]
    sys.path[:0] = [str(BENCH), str(BENCH.parent)]
    from harness import corpus as corpus_module
    from harness.measure import check_page, wrk
    from harness.targets import Packyard, Paths
    from run import ensure_peers

    peers_bin = ensure_peers()
    mode = corpus_module.MODES["quick"]
    corpus = corpus_module.load(BENCH / "out" / "corpus" / mode.name, mode, peers_bin / "pip")
    work = Path(tempfile.mkdtemp(prefix="index-ab-"))
    targets = []
    try:
        for number, src in enumerate(trees):
            paths = Paths(bin=VENV_BIN, peers_bin=peers_bin, src=src, work=work / str(number))
            target = Packyard(paths, BENCH / "out" / "cache")
            targets.append(target)
            target.start()
            target.load(corpus)  # from the cache after the first
            print(f"tree {number}: {target.version()} on {target.url}", flush=True)
        rps: dict[tuple[str, int], list[float]] = {}
        pages = [pages_of(target) for target in targets]
        for target_pages in pages:  # warm every process's caches
            for page in args.pages:
                check_page(target_pages[page])
                wrk(target_pages[page], 2)
        for round_index in range(args.rounds):
            order = list(range(len(targets)))
            order = order[round_index % len(order) :] + order[: round_index % len(order)]
            for page in args.pages:
                for number in order:
                    result = wrk(pages[number][page], args.seconds)
                    if result["non_2xx"] or result["socket_errors"]:
                        raise RuntimeError(f"tree {number} {page}: errors {result}")
                    rps.setdefault((page, number), []).append(result["rps"])
            print(f"round {round_index + 1} of {args.rounds} done", flush=True)
    finally:
        for target in targets:
            target.stop()
    if not rps:
        return 0  # --rounds 0: the cache is loaded, nothing measured
    print(f"\n{'page':<10}" + "".join(f"{'tree ' + str(n):>16}" for n in range(len(trees))))
    for page in args.pages:
        medians = [statistics.median(rps[page, number]) for number in range(len(trees))]
        cells = [f"{m:>9,.0f} {m / medians[0]:5.2f}x" for m in medians]
        print(f"{page:<10}" + "".join(f"{cell:>16}" for cell in cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
