"""The monitor's web server: the static page over HTTP and live data over one WebSocket.

One asyncio loop runs in a background thread (``websockets`` answers both the plain HTTP GETs
for the page and the WebSocket upgrade on ``/ws``). Producers in other threads (the pipeline
listener) call ``send_block`` / ``send_json``; those hand the message to the loop with
``call_soon_threadsafe`` and return at once.

Each client has a bounded queue. Waveform blocks that do not fit (a slow browser, a stalled
tab) are dropped for that client only and counted; the count is reported to that client and in
``stats()``. Low-rate JSON is never dropped while a client is alive.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import mimetypes
import threading
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge_edge.errors import ConfigError
from bridge_edge.monitor import access

log = logging.getLogger(__name__)
# websockets logs every connection at INFO; a monitor page reconnecting is not news.
logging.getLogger("websockets.server").setLevel(logging.WARNING)

STATIC_DIR = Path(__file__).with_name("static")
WS_PATH = "/ws"
# Scripts and styles only from the page's own origin: even if some text from a stream ended up
# in markup by mistake, the browser would not run it.
SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; object-src 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


@dataclass(eq=False)  # identity: kept in a set
class _Client:
    connection: ServerConnection
    max_blocks: int
    queue: collections.deque = field(default_factory=collections.deque)
    blocks_queued: int = 0
    dropped_blocks: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, message: bytes | str) -> None:
        if isinstance(message, bytes):
            if self.blocks_queued >= self.max_blocks:
                self.dropped_blocks += 1
                return
            self.blocks_queued += 1
        self.queue.append(message)
        self.wake.set()


class MonitorServer:
    """Serves ``static/`` and fans messages out to every connected page."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        max_queued_blocks: int = 256,
        history: int = 600,
    ) -> None:
        access.check_bind(host, token)
        self.host = host
        self.port = port
        self.token = token
        self.max_queued_blocks = max_queued_blocks
        self._clients: set[_Client] = set()
        self._latest: dict[str, str] = {}  # message type -> last message, replayed to new clients
        self._history: collections.deque[str] = collections.deque(maxlen=history)  # predictions
        self._dropped_closed = 0  # drops of clients that have gone, so the total never shrinks
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?token={self.token}" if self.token else ""
        return f"http://{host}:{self.port}/{query}"

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="monitor-server", daemon=True)
        self._thread.start()
        self._ready.wait(timeout_s)
        if self._startup_error is not None:
            err = self._startup_error
            raise ConfigError(
                f"cannot serve the monitor on {self.host}:{self.port} ({err}); "
                "pick another --port or stop what is using it",
                key="port",
                value=self.port,
                expected="a free TCP port",
            ) from err
        if not self._ready.is_set():
            raise ConfigError(
                f"the monitor server did not start within {timeout_s} s", key="port", value=self.port
            )
        log.debug("monitor on %s", self.url)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except OSError as err:  # address in use, permission denied
            self._startup_error = err
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            subprotocols=[access.PROTOCOL],
            compression=None,  # float32 noise does not compress; save the CPU
            max_size=64 * 1024,
        ) as server:
            self.port = server.sockets[0].getsockname()[1]  # the real one when port=0
            self._ready.set()
            await self._stop.wait()

    # --- producers (any thread) -------------------------------------------------------------

    def send_block(self, frame: bytes) -> None:
        """Broadcast one binary waveform frame (see frames.py)."""
        self._post(frame)

    def send_json(self, message: dict, keep: str | None = None) -> None:
        """Broadcast a low-rate message. ``keep="latest"`` replays the newest of its type to new
        clients; ``keep="history"`` replays all recent ones (the prediction timeline)."""
        text = json.dumps(message, separators=(",", ":"), allow_nan=False)
        self._post(text, keep=keep, kind=message.get("type", ""))

    def _post(self, message: bytes | str, keep: str | None = None, kind: str = "") -> None:
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        try:
            loop.call_soon_threadsafe(self._broadcast, message, keep, kind)
        except RuntimeError:  # loop closed between the check and the call (shutdown)
            pass

    def stats(self) -> dict:
        """Clients connected and waveform blocks dropped for slow clients (all clients, ever)."""
        return {
            "clients": len(self._clients),
            "dropped_blocks": self._dropped_closed + sum(c.dropped_blocks for c in list(self._clients)),
        }

    # --- inside the loop --------------------------------------------------------------------

    def _broadcast(self, message: bytes | str, keep: str | None, kind: str) -> None:
        if keep == "latest":
            self._latest[kind] = message  # type: ignore[assignment]
        elif keep == "history":
            self._history.append(message)  # type: ignore[arg-type]
        for client in self._clients:
            client.offer(message)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        headers = request.headers
        if not access.host_header_ok(headers.get("Host"), self.host):
            return _respond(403, "text/plain", b"forbidden host\n")
        path = request.path.split("?", 1)[0]
        if path == WS_PATH:
            offered = access.token_from_subprotocols(headers.get("Sec-WebSocket-Protocol"))
            if not access.token_ok(self.token, offered):
                log.warning("refused a monitor connection with a missing or wrong token")
                return _respond(403, "text/plain", b"missing or wrong token\n")
            if not access.origin_ok(headers.get("Origin"), headers.get("Host")):
                log.warning("refused a monitor connection from origin %s", headers.get("Origin"))
                return _respond(403, "text/plain", b"foreign origin\n")
            return None  # go on with the WebSocket handshake
        return _static(path)

    async def _handle(self, connection: ServerConnection) -> None:
        client = _Client(connection, self.max_queued_blocks)
        for message in (*self._latest.values(), *self._history):
            client.offer(message)
        self._clients.add(client)
        writer = asyncio.create_task(self._write(client))
        try:
            async for _ in connection:  # the page sends nothing we act on; keep reading for close
                pass
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            self._dropped_closed += client.dropped_blocks
            writer.cancel()

    async def _write(self, client: _Client) -> None:
        try:
            while True:
                await client.wake.wait()
                client.wake.clear()
                while client.queue:
                    message = client.queue.popleft()
                    if isinstance(message, bytes):
                        client.blocks_queued -= 1
                    await client.connection.send(message)
        except ConnectionClosed:
            pass


def _respond(status: int, content_type: str, body: bytes) -> Response:
    reason = {200: "OK", 403: "Forbidden", 404: "Not Found"}[status]
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))), *SECURITY_HEADERS])
    return Response(status, reason, headers, body)


def _static(path: str) -> Response:
    """Only files that exist directly in static/ are served; no path is ever joined blindly."""
    name = "index.html" if path in ("/", "/index.html") else path.lstrip("/")
    files = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file()}
    if name not in files:
        return _respond(404, "text/plain", b"not found\n")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type.endswith("javascript"):
        content_type += "; charset=utf-8"
    return _respond(200, content_type, files[name].read_bytes())
