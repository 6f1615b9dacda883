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
import shutil
import signal
import socket
import subprocess
import sys
from typing import Any

WORKER_STOP_SECONDS = 20


def supervise(spec: dict[str, Any]) -> int:
    """Run the server until it ends (forwarding SIGTERM and SIGINT), then stop the worker.
    The server's exit status."""
    listener = _listen(*spec["listen"])
    fd = str(listener.fileno())
    worker = subprocess.Popen(spec["worker"]) if spec["worker"] else None
    try:
        server_args = [arg.replace("{listen_fd}", fd) for arg in spec["server"]]
        server = subprocess.Popen(server_args, pass_fds=[listener.fileno()])
        listener.close()  # uWSGI holds it now
        forward = lambda signum, _frame: server.send_signal(signum)  # noqa: E731
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, forward)
        return server.wait()
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
