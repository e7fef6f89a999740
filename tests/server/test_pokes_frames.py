"""Pokes' frames written straight to uvicorn's connections (``server.pokes.frame_writer``),
through a real uvicorn serving real sockets: a small ASGI app whose every WebSocket joins a
real :class:`PokeHub` with the writer made from uvicorn's own ``send``. Every socket gets
every poke, in order, as websockets reads it; a socket whose buffers are full falls back to
the ASGI ``send`` (which waits) and gets only the newest poke it missed, without holding up
the others; a closed connection's writer declines. Under another uvicorn protocol there is
no writer and the ASGI ``send`` writes every poke. No timing is asserted."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from websockets.frames import Frame, Opcode
from websockets.sync.client import ClientConnection, connect

from server.accounts import DeviceState
from server.pokes import PokeHub, WriteFrame, frame_writer, text_frame
from tests.server.test_pokes_fanout import Stalled


async def _no_devices(tenant: str) -> list[DeviceState]:
    return []


class PokeApp:
    """Every WebSocket joins the hub (tenant ``t``) with ``frame_writer(send)``; the
    writers are kept, and each handler's end is counted."""

    def __init__(self) -> None:
        self.hub = PokeHub(None, _no_devices, recheck_s=3600)
        self.writers: list[WriteFrame | None] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ended = 0
        self.lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                self.loop = asyncio.get_running_loop()
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert scope["type"] == "websocket"
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        direct = frame_writer(send)
        self.writers.append(direct)

        async def close() -> None:
            await send({"type": "websocket.close", "code": 4401})

        try:
            async with self.hub.attach("t", "n", 1, send, close, direct) as outlet:
                self.hub.first(outlet, 0)
                while (await receive())["type"] != "websocket.disconnect":
                    continue
        finally:
            with self.lock:
                self.ended += 1

    def on_loop(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server's loop; its result."""
        assert self.loop is not None

        async def call() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=30)

    def deliver(self, cursors: range) -> None:
        """Pokes for ``cursors``, one after another in one turn of the server's loop."""

        def run() -> None:
            for cursor in cursors:
                self.hub.deliver("t", cursor)

        self.on_loop(run)


@contextmanager
def serving(ws: str) -> Iterator[tuple[str, PokeApp]]:
    app = PokeApp()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(
        app, ws=ws, ws_per_message_deflate=False, ws_ping_interval=None, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # uvicorn's legacy websockets
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/", app
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def _cursors_until(ws: ClientConnection, last: int) -> list[int]:
    got: list[int] = []
    while not got or got[-1] < last:
        got.append(int(json.loads(ws.recv(timeout=30))["cursor"]))
    return got


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_a_text_frame_is_websockets_own_unmasked_frame(size: int) -> None:
    payload = bytes(ord("a") + i % 26 for i in range(size))
    assert text_frame(payload) == Frame(Opcode.TEXT, payload).serialize(mask=False, extensions=[])


def test_only_a_uvicorn_connections_own_send_gets_a_writer() -> None:
    async def wrapped(message: Any) -> None:
        return None

    assert frame_writer(None) is None
    assert frame_writer(wrapped) is None
    assert frame_writer(print) is None


@pytest.mark.parametrize(("ws", "direct"), [("websockets-sansio", True), ("websockets", False)])
def test_every_socket_gets_every_poke_in_order(ws: str, direct: bool) -> None:
    with serving(ws) as (url, app):
        sockets = [connect(url, proxy=None, open_timeout=10) for _ in range(20)]
        for s in sockets:
            assert json.loads(s.recv(timeout=10)) == {"type": "poke", "cursor": 0}
        assert [w is not None for w in app.writers] == [direct] * len(sockets)
        app.deliver(range(1, 51))
        for s in sockets:  # none lost, none out of order, none twice
            assert _cursors_until(s, 50) == list(range(1, 51))
            s.close()


def test_a_full_socket_falls_back_coalesces_and_does_not_hold_up_the_others() -> None:
    with serving("websockets-sansio") as (url, app):
        stalled = Stalled(url)  # reads nothing until told to
        free = connect(url, proxy=None, open_timeout=10, max_queue=None)
        assert json.loads(free.recv(timeout=10))["cursor"] == 0
        assert all(w is not None for w in app.writers)
        last = 20_000  # ~30 bytes a poke: more than the stalled socket's buffers hold
        app.deliver(range(1, last + 1))
        got_free = _cursors_until(free, last)  # while the stalled socket still reads nothing
        assert got_free == sorted(set(got_free)) and got_free[-1] == last
        got = stalled.cursors_until(last)
        assert got == sorted(set(got)) and got[-1] == last and len(got) < last
        free.close()
        stalled.close()


def test_a_closed_connections_writer_declines() -> None:
    with serving("websockets-sansio") as (url, app):
        ws = connect(url, proxy=None, open_timeout=10)
        assert json.loads(ws.recv(timeout=10))["cursor"] == 0
        writer = app.writers[0]
        assert writer is not None
        ws.close()
        deadline = time.monotonic() + 30
        while app.ended < 1:
            assert time.monotonic() < deadline, "the handler did not see the disconnect"
            time.sleep(0.02)
        assert app.on_loop(writer, text_frame(b'{"type":"poke","cursor":1}')) is False
        assert app.hub.sockets("t") == 0
