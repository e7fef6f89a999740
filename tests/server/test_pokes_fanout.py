"""Pokes end to end through real sockets and a real Redis: a server process (uvicorn, in a
thread, embedded SQLite) whose pokes come over Redis pub/sub, as they do from another
server process. Each poke is decoded once for all the tenant's sockets; every socket gets
increasing cursors ending at the newest (none lost); a socket that does not read gets only
the newest poke it missed once it reads again (pokes coalesce, no per-socket queue). No
timing is asserted."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import REGISTRY
from websockets.sync.client import ClientConnection, connect

from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.pokes import poke_bytes, redis_channel
from server.settings import Settings
from server.testing import embedded_settings, run_in_thread
from tests.core.conftest import make_registry

pytestmark = [pytest.mark.redis]


class Stalled:
    """A poke socket that reads nothing until told to: a raw TCP socket with a small
    receive buffer and small segments (the server's send buffer grows with the segment
    size, to ~2 MB on loopback), speaking WebSocket through websockets' sans-I/O protocol."""

    def __init__(self, url: str) -> None:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri

        self.protocol = ClientProtocol(parse_uri(url))
        host, port = url.removeprefix("ws://").split("/", 1)[0].split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
        self.sock.settimeout(30)
        self.sock.connect((host, int(port)))
        self.protocol.send_request(self.protocol.connect())
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        self.pending: list[int] = []
        self.cursors_until(0)  # the handshake and the first poke (the cursor now)

    def cursors_until(self, last: int) -> list[int]:
        """Read until a poke of cursor ``last``; the cursors of the pokes read."""
        from websockets.frames import Frame

        got: list[int] = []
        while not got or got[-1] < last:
            data = self.sock.recv(65536)
            assert data, "the server closed the socket"
            self.protocol.receive_data(data)
            for event in self.protocol.events_received():
                if isinstance(event, Frame):
                    got.append(int(json.loads(bytes(event.data))["cursor"]))
        return got

    def close(self) -> None:
        self.sock.close()


class Server:
    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.settings = settings

    def ws_url(self, tenant: str) -> str:
        """The poke socket URL (with an access token) of a new device of ``tenant``."""
        code = admin.enroll_device(self.settings, tenant).enrollment_code
        link = HttpTransport.enroll(self.url, code)
        assert link.tokens is not None
        url = f"{link.ws_url()}?token={link.tokens.access_token}"
        link.close()
        return url

    def socket_of(self, tenant: str) -> ClientConnection:
        """A poke socket of a new device of ``tenant``, its first poke (cursor now) read."""
        ws = connect(self.ws_url(tenant), proxy=None, open_timeout=10)
        assert json.loads(ws.recv(timeout=10))["type"] == "poke"
        return ws

    def publish(self, tenant: str, cursors: range) -> None:
        """Pokes for ``cursors`` as another server process publishes them."""
        client = redis.Redis.from_url(self.settings.redis_url or "")
        try:
            channel = redis_channel(self.settings, tenant)
            for start in range(cursors.start, cursors.stop, 10_000):
                pipe = client.pipeline(transaction=False)
                for cursor in range(start, min(start + 10_000, cursors.stop)):
                    pipe.publish(channel, poke_bytes(cursor))
                pipe.execute()
        finally:
            client.close()


@pytest.fixture(scope="module")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder: Path = tmp_path_factory.mktemp("pokes-fanout")
    settings = embedded_settings(
        folder,
        redis_url=redis_url,
        redis_prefix="FYNLO_TEST_" + secrets.token_hex(4),
    )
    with run_in_thread(settings, registry=make_registry()) as url:
        yield Server(url, settings)


def _counter(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def _cursors_until(ws: ClientConnection, last: int) -> list[int]:
    got: list[int] = []
    while not got or got[-1] < last:
        message: Any = json.loads(ws.recv(timeout=30))
        got.append(int(message["cursor"]))
    return got


def test_every_socket_gets_every_poke_decoded_once(server: Server) -> None:
    tenant = admin.create_tenant(server.settings, "fanout", "t" + secrets.token_hex(6))
    received, sent = _counter("fynlo_pokes_received_total"), _counter("fynlo_pokes_sent_total")
    sockets = [server.socket_of(tenant) for _ in range(3)]
    last = 300
    server.publish(tenant, range(1, last + 1))
    got = [_cursors_until(ws, last) for ws in sockets]
    for cursors in got:
        assert cursors == sorted(set(cursors)) and cursors[-1] == last  # increasing, none lost
    # Decoded once per poke for the tenant, whatever the number of sockets; one write per
    # message a socket received (its first poke included). The server counts a write just
    # after making it, so a reader can be a moment ahead of the counter.
    assert _counter("fynlo_pokes_received_total") - received == last
    written = len(sockets) + sum(len(c) for c in got)
    for _ in range(100):
        if _counter("fynlo_pokes_sent_total") - sent >= written:
            break
        time.sleep(0.05)
    assert _counter("fynlo_pokes_sent_total") - sent == written
    for ws in sockets:
        ws.close()


def test_poke_sockets_are_not_compressed(server: Server) -> None:
    """A poke is ~30 bytes: the server declines per-message-deflate (which the client
    offers), so a poke is the same frame for every socket and no zlib context is kept."""
    tenant = admin.create_tenant(server.settings, "plain", "t" + secrets.token_hex(6))
    ws = server.socket_of(tenant)
    assert ws.request is not None and ws.response is not None
    assert "permessage-deflate" in str(ws.request.headers.get("Sec-WebSocket-Extensions"))
    assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
    ws.close()


def test_a_socket_that_does_not_read_gets_only_the_newest_poke(server: Server) -> None:
    """The stalled socket's buffers fill (it reads nothing), so the server cannot write to
    it: what comes meanwhile waits in its one slot, the newest replacing the older."""
    tenant = admin.create_tenant(server.settings, "slow", "t" + secrets.token_hex(6))
    stalled = Stalled(server.ws_url(tenant))
    received = _counter("fynlo_pokes_received_total")
    coalesced = _counter("fynlo_pokes_coalesced_total")
    # ~30 bytes a poke: four times what the stalled socket's buffers hold (~150 KB here).
    last = 20_000
    server.publish(tenant, range(1, last + 1))
    for _ in range(600):  # until the server has taken every poke from Redis (<= 60 s)
        if _counter("fynlo_pokes_received_total") - received >= last:
            break
        time.sleep(0.1)
    assert _counter("fynlo_pokes_received_total") - received == last
    # Only now does it read: what the server wrote while it could, then (each time the
    # buffers made room: the kernel grows them) the newest poke at that moment, never one
    # of those that came while it could not write. The last is the newest of all.
    got = stalled.cursors_until(last)
    assert got == sorted(set(got)) and got[-1] == last
    assert len(got) < last
    assert _counter("fynlo_pokes_coalesced_total") - coalesced == last - len(got)
    stalled.close()


def test_fynlo_serve_listens_on_a_socket_whose_connections_send_small_writes_at_once() -> None:
    """``fynlo serve``'s public socket says IPPROTO_TCP, so asyncio sets TCP_NODELAY on each
    connection it accepts (with uvicorn's own protocol-0 socket, Nagle held a poke written
    while the previous one was unacknowledged for the peer's delayed ACK)."""
    import asyncio

    from server.serving import bind_public

    async def run() -> tuple[int, int]:
        accepted: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()

        class Keep(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                accepted.set_result(transport)  # type: ignore[arg-type]

        sock = bind_public("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Keep, sock=sock)
        port = sock.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        transport = await asyncio.wait_for(accepted, 10)
        conn = transport.get_extra_info("socket")
        flags = (sock.proto, conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()
        transport.close()
        server.close()
        return flags

    proto, nodelay = asyncio.run(run())
    assert proto == socket.IPPROTO_TCP and nodelay != 0
