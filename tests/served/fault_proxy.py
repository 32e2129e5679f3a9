"""A TCP proxy in front of the real test server that can misbehave on demand: refuse connections (a stopped
server), hold answers back (a timeout), answer 503 (a server error) or drop the connection mid-request.

The server behind it is the real vLLM the tier starts; the proxy only decides whether bytes reach it, so every
answer a test reads in "pass" mode is the server's own.
"""

from __future__ import annotations

import asyncio
import socket
import threading

_BODY = b'{"error": {"message": "injected overload"}}'
_UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultProxy:
    """Forward 127.0.0.1:``port`` to ``upstream`` (host, port), with a ``mode``: ``pass``, ``delay`` (hold each
    request ``delay`` seconds first), ``error`` (answer 503 to the next ``errors`` requests, then pass) or ``drop``
    (read a request, then close the connection)."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.mode = "pass"
        self.delay = 0.0
        self.errors = 0
        self.requests = 0  # requests seen (a connection's first; later ones on it are piped through)
        self.client_closed = 0  # connections the client closed before its answer came
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _call(self, coro):  # noqa: ANN001, ANN202
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def start(self) -> None:
        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self._call(start())

    def stop(self) -> None:
        """Like a stopped server: the port refuses connections and open ones are closed."""
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            self._close_all()
        self._call(stop())

    def set(self, mode: str, *, delay: float = 0.0, errors: int = 0) -> None:
        """Switch mode; open (kept-alive) connections are closed so the next request meets the new mode."""
        async def switch() -> None:
            self.mode, self.delay, self.errors = mode, delay, errors
            self._close_all()
        self._call(switch())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            first = await _read_request(reader)
            if not first:
                return
            self.requests += 1
            if self.mode == "drop":
                return
            if self.mode == "error" and self.errors > 0:
                self.errors -= 1
                writer.write(_UNAVAILABLE)
                await writer.drain()
                return
            if self.mode == "delay":
                closed = asyncio.ensure_future(reader.read(1))  # b"" once the client hangs up
                done, _ = await asyncio.wait({closed}, timeout=self.delay)
                if done and not closed.result():
                    self.client_closed += 1
                    return
                closed.cancel()
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            up_writer.write(first)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """One whole HTTP request (headers and a Content-Length body), or b"" when the client closed first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + (await reader.readexactly(length) if length else b"")
