"""``packyard serve``'s last process: it runs the web server and the embedded worker, and
stops the worker when the server ends.

``packyard serve`` loads the whole app to migrate and to create the first admin, then
replaces itself with this script (``os.execv``), which imports nothing but the standard
library: the process that only waits costs a few MiB instead of the app's 90. Run it as a
script, ``python -I supervisor.py SPEC``, never as a module of ``app`` (importing the
package would load the app again). SPEC is JSON: ``{"server": argv, "worker": argv or
null, "remove": a directory to delete at the end, or null, "listen": [host, port, backlog]}``.

The supervisor opens the listening socket itself, with ``TCP_NODELAY``, which the
connections it accepts inherit, and hands it to uWSGI (``{listen_fd}`` in the server's
arguments). uWSGI's HTTP router has no option for it, and without it the router's writes of
a large page (the 92 KB root of 2,000 projects) waited 40 ms each for the client's delayed
ACK: 800 requests/s instead of 5,600.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

WORKER_STOP_SECONDS = 20
# The embedded worker's niceness: its processing of an uploaded file (about as much CPU as
# the upload itself) yields the cores to the web processes, which answer the next request
# meanwhile. It still gets any CPU the web processes leave idle.
WORKER_NICENESS = 10

# uWSGI's start-up banner and the lines it repeats for each process (``running as root``
# three times, ``spawned``, ``ready``, ``buried``): facts about uWSGI, not about Packyard,
# which prints its own one-line start. Everything else (errors, tracebacks, the access log
# when it goes to stdio, the app's own logging) passes.
UWSGI_NOISE = re.compile(
    r"\*\*\* (Starting uWSGI|WARNING: you are running uWSGI as root|Operational MODE)"
    r"|compiled with version|os: |nodename: |machine: |clock source: |pcre jit"
    r"|detected (number of CPU cores|binary path|max file descriptor)"
    r"|current working directory: |uWSGI running as root|your (processes number limit"
    r"|memory page size|server socket listen backlog|mercy for graceful)"
    r"|lock engine: |thunder lock: |uwsgi socket \d+ bound to |Python version: "
    r"|--- Python VM already initialized|Python main interpreter initialized"
    r"|python threads support enabled|mapped \d+ bytes|spawned uWSGI (master|worker|http)"
    r"|WSGI app \d+ \(mountpoint=.*\) ready in|SIGINT/SIGTERM received|worker \d+ buried"
    r"|goodbye to uWSGI|\*\*\* uWSGI is running in multiple interpreter mode"
    r"|uWSGI http bound on |\[uwsgi-http\] |gateway \"uWSGI http \d+\" has been buried"
    # At a stop: the router ended while it held one of uWSGI's shared locks, which the
    # master then recovers (nothing is lost: no request is in flight any more).
    r"|\[deadlock-detector\] a process holding a robust mutex died"
)


def quiet(lines: Iterable[str], out: TextIO) -> None:
    """Copy uWSGI's log lines to ``out``, leaving out its banner and per-process noise."""
    for line in lines:
        if not UWSGI_NOISE.match(line):
            out.write(line)
            out.flush()


def supervise(spec: dict[str, Any]) -> int:
    """Run the server until it ends (forwarding SIGTERM and SIGINT), then stop the worker.
    The server's exit status."""
    try:
        listener = _listen(*spec["listen"])
    except OSError as exc:
        host, port, _ = spec["listen"]
        sys.exit(f"Error: cannot listen on {host}:{port}: {exc.strerror}")
    fd = str(listener.fileno())
    worker = subprocess.Popen(spec["worker"]) if spec["worker"] else None
    if worker is not None:
        os.setpriority(os.PRIO_PROCESS, worker.pid, WORKER_NICENESS)
    try:
        server_args = [arg.replace("{listen_fd}", fd) for arg in spec["server"]]
        # Both streams: with an access log (--req-logger) uWSGI writes its own log, the
        # banner among it, on stdout, and the access lines too when they go to stdio.
        server = subprocess.Popen(
            server_args, pass_fds=[listener.fileno()], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        listener.close()  # uWSGI holds it now
        assert server.stdout is not None and server.stderr is not None
        relays = [
            threading.Thread(target=quiet, args=(source, sink), daemon=True)
            for source, sink in ((server.stdout, sys.stdout), (server.stderr, sys.stderr))
        ]
        for relay in relays:
            relay.start()
        forward = lambda signum, _frame: server.send_signal(signum)  # noqa: E731
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, forward)
        returncode = server.wait()
        for relay in relays:
            relay.join(timeout=5)  # the last lines, a failure's reason among them
        return returncode
    finally:
        if worker is not None:
            _stop(worker)
        if spec["remove"]:
            shutil.rmtree(spec["remove"], ignore_errors=True)


def _listen(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted ones inherit it
    listener.bind((host, port))
    listener.listen(backlog)
    return listener


def _stop(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown: the task in hand ends
    try:
        worker.wait(timeout=WORKER_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def main() -> int:
    returncode = supervise(json.loads(sys.argv[1]))
    if returncode != 0:
        print(f"Error: uWSGI exited with status {returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
