"""The framework ceiling: one Flask route answering constant pages, on Packyard's server.

It is served exactly as ``packyard serve`` serves Packyard: through ``app.serving.run_server``
with this module's app factory as the app, so the server, its workers and threads follow
whatever ``app/serving.py`` sets.

    .venv/bin/python bench/trivial_app.py --port 8099 --pages DIR

answers ``/<key>/`` with the bytes of ``DIR/<key>.html`` (e.g. ``/p5/`` and ``/p200/``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flask import Flask, Response, abort

PAGES_VARIABLE = "PACKYARD_BENCH_TRIVIAL_PAGES"  # the folder, for the workers' factory calls


def create_trivial_app() -> Flask:
    folder = Path(os.environ[PAGES_VARIABLE])
    pages = {path.stem: path.read_bytes() for path in folder.glob("*.html")}
    app = Flask("trivial")

    @app.get("/<key>/")
    def constant(key: str) -> Response:
        if key not in pages:
            abort(404)
        return Response(pages[key], content_type="text/html; charset=utf-8")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pages", type=Path, required=True, help="a folder of <key>.html")
    args = parser.parse_args()
    os.environ[PAGES_VARIABLE] = str(args.pages.resolve())
    try:
        from app.serving import run_server
    except ImportError as exc:
        sys.exit(f"trivial: this Packyard tree has no app.serving.run_server ({exc})")
    # The server's processes import this module by name.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    print("trivial: served by app.serving.run_server (as `packyard serve`)", flush=True)
    run_server("127.0.0.1", args.port, None, app="trivial_app:create_trivial_app()")


if __name__ == "__main__":
    main()
