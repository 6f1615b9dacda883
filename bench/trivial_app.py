"""The framework ceiling: one Flask route answering constant pages, on Packyard's server.

It is served exactly as ``packyard serve`` serves Packyard: this script swaps the app that
``app.cli._run_gunicorn`` loads for the trivial one and calls it, so the workers, threads
and worker class follow whatever ``app/cli.py`` sets. If that private function is gone or
changed, it falls back to the settings the README documents (gthread, 4 threads, 2 x CPUs
workers, at most 8) and says so.

    .venv/bin/python bench/trivial_app.py --port 8099 --pages DIR

answers ``/<key>/`` with the bytes of ``DIR/<key>.html`` (e.g. ``/p5/`` and ``/p200/``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flask import Flask, Response, abort


def make_app(pages: dict[str, bytes]) -> Flask:
    app = Flask("trivial")

    @app.get("/<key>/")
    def constant(key: str) -> Response:
        if key not in pages:
            abort(404)
        return Response(pages[key], content_type="text/html; charset=utf-8")

    return app


def serve_like_packyard(flask_app: Flask, port: int) -> None:
    try:
        import app.cli as packyard_cli

        run = packyard_cli._run_gunicorn
        packyard_cli.create_app = lambda: flask_app  # type: ignore[assignment]
        print("trivial: served by app.cli._run_gunicorn (the settings of `packyard serve`)")
        sys.stdout.flush()
        run("127.0.0.1", port, None)
    except (ImportError, AttributeError, TypeError) as exc:
        print(f"trivial: app.cli._run_gunicorn unusable ({exc!r}); documented settings")
        sys.stdout.flush()
        serve_documented(flask_app, port)


def serve_documented(flask_app: Flask, port: int) -> None:
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": f"127.0.0.1:{port}",
                "workers": min(2 * (os.cpu_count() or 1), 8),
                "worker_class": "gthread",
                "threads": 4,
                "timeout": 120,
                "loglevel": "warning",
            }
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Flask:
            return flask_app

    Server().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pages", type=Path, required=True, help="a folder of <key>.html")
    args = parser.parse_args()
    pages = {path.stem: path.read_bytes() for path in args.pages.glob("*.html")}
    serve_like_packyard(make_app(pages), args.port)


if __name__ == "__main__":
    main()
