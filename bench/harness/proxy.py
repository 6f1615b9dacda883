"""A byte-counting TCP relay, to measure what a client fetched from a server.

It forwards raw bytes (it does not parse HTTP), so it counts headers and bodies as the
client received them, whatever the server's logs say.
"""

from __future__ import annotations

import asyncio
import threading


class CountingProxy:
    """Listens on a loopback port and relays every connection to ``target_port``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down = 0  # server -> client
        self.up = 0  # client -> server
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def reset(self) -> None:
        self.down = self.up = self.connections = 0

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {client_w, server_w}
        try:
            await asyncio.gather(
                self._pipe(client_r, server_w, "up"), self._pipe(server_r, client_w, "down")
            )
        finally:
            self._writers -= {client_w, server_w}
            client_w.close()
            server_w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if direction == "down":
                    self.down += len(chunk)
                else:
                    self.up += len(chunk)
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()  # pass a half-close on
        except (ConnectionError, OSError):
            writer.close()

    def close(self) -> None:
        """Stop listening and drop the connections the client left open (keep-alive)."""
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # the relays then end by themselves
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.wait(tasks, timeout=5) if tasks else None
