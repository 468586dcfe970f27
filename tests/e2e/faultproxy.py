"""A small asyncio TCP proxy that can delay, hang or pass traffic, put in front of a real server.

``FaultProxy(port)`` listens on ``127.0.0.1`` (a free port) in a daemon thread
and forwards every connection to ``127.0.0.1:port``.  Its mode can be switched
at any time and applies to open connections too:

* :meth:`passthrough` forwards both ways;
* :meth:`delay` holds each chunk of the server's answers for ``seconds``
  (a slow server: every request takes that long);
* :meth:`hang` stops forwarding the server's answers (a stopped or wedged
  server: the client's requests get no answer until they time out).

:meth:`stop` closes every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class FaultProxy:
    """See the module docstring."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.mode = "pass"
        self.seconds = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"

    @property
    def url(self) -> str:
        """Base URL clients should use."""
        return f"http://127.0.0.1:{self.port}"

    def passthrough(self) -> None:
        """Forward everything as it comes."""
        self.mode = "pass"

    def delay(self, seconds: float) -> None:
        """Hold each chunk of the server's answers for ``seconds``."""
        self.seconds = seconds
        self.mode = "delay"

    def hang(self) -> None:
        """Stop forwarding the server's answers (they wait until the mode changes)."""
        self.mode = "hang"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pump(reader, up_writer, answers=False),
            self._pump(up_reader, writer, answers=True),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, answers: bool
    ) -> None:
        while True:
            data = await src.read(65536)
            if not data:
                with contextlib.suppress(OSError):
                    dst.write_eof()
                return
            while answers and self.mode == "hang":
                await asyncio.sleep(0.05)
            if answers and self.mode == "delay":
                await asyncio.sleep(self.seconds)
            dst.write(data)
            await dst.drain()

    def stop(self) -> None:
        """Close the listening socket and every connection."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
