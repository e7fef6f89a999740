"""The poke hub over a real Channels plugin (memory backend) and sockets' sends that are
real coroutines (one that completes at once, as uvicorn's does while the socket can take
data, and one held until released, as when a socket's buffers are full): one subscription
per tenant, each poke made once and the same send event written to every socket in one
pass, pokes coalesced to the newest while a socket cannot take them, tenants kept apart,
and the revocation check made once per tenant, not once per socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend

from server.accounts import DeviceState
from server.pokes import Outlet, PokeHub, SendEvent, channel_for, poke_bytes, poke_event


class Socket:
    """What a poke socket was sent. ``held``: each send waits until it is set (the
    socket's write buffer is full until then)."""

    def __init__(self, held: bool = False) -> None:
        self.events: list[SendEvent] = []
        self.gate = asyncio.Event()
        if not held:
            self.gate.set()
        self.closed = False
        self.broken = False

    async def send(self, event: SendEvent) -> None:
        if self.broken:
            raise OSError("the peer went away")
        await self.gate.wait()
        self.events.append(event)

    async def close(self) -> None:
        self.closed = True

    @property
    def cursors(self) -> list[int]:
        return [int(str(e["text"]).split(":")[-1].rstrip("}")) for e in self.events]


def test_an_outlet_writes_at_once_and_coalesces_while_the_socket_cannot_take_more() -> None:
    async def run() -> None:
        sock = Socket()
        outlet = Outlet("till", 1, sock.send, sock.close)
        outlet.offer(1, poke_event(1))
        assert sock.cursors == [1] and not outlet.writing  # written in the caller's turn
        sock.gate.clear()  # the socket's buffers are full from now on
        outlet.offer(2, poke_event(2))  # its write waits for the socket
        assert outlet.writing
        for cursor in (3, 5, 4):  # 4 is older than what waits: ignored
            outlet.offer(cursor, poke_event(cursor))
        await asyncio.sleep(0)
        assert sock.cursors == [1]
        sock.gate.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert sock.cursors == [1, 2, 5]  # 2 was in flight; 3 was replaced by 5
        assert not outlet.writing and outlet.sent == 5
        outlet.offer(5, poke_event(5))  # not newer than what was sent
        outlet.offer(6, poke_event(6))
        assert sock.cursors == [1, 2, 5, 6]

    asyncio.run(run())


def test_a_broken_socket_stops_its_outlet_only() -> None:
    async def run() -> None:
        broken, fine = Socket(), Socket()
        broken.broken = True
        outlets = [Outlet("a", 1, s.send, s.close) for s in (broken, fine)]
        for outlet in outlets:
            outlet.offer(1, poke_event(1))
        assert outlets[0].closed and not outlets[1].closed and fine.cursors == [1]

    asyncio.run(run())


class Devices:
    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.calls: list[str] = []
        self.during: asyncio.Event | None = None  # set: the query waits for it

    async def __call__(self, tenant: str) -> list[DeviceState]:
        self.calls.append(tenant)
        if self.during is not None:
            await self.during.wait()
        return [DeviceState(tenant, n, 1, n in self.revoked) for n in ("a", "b", "c")]


@asynccontextmanager
async def _hub(devices: Devices, now: list[float]) -> AsyncIterator[tuple[PokeHub, ChannelsPlugin]]:
    channels = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
    async with channels:
        # The sweeper's period is long: the tests call check() themselves.
        yield PokeHub(channels, devices, recheck_s=3600, monotonic=lambda: now[0]), channels


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.parametrize("sockets", [1, 50])
def test_hub_fans_one_event_out_to_every_socket_of_the_tenant(sockets: int) -> None:
    async def run() -> None:
        async with _hub(Devices(), [0.0]) as (hub, channels), AsyncExitStack() as stack:
            socks = [Socket() for _ in range(sockets)]
            for sock in socks:
                await stack.enter_async_context(hub.attach("t1", "a", 1, sock.send, sock.close))
            other = Socket()
            await stack.enter_async_context(hub.attach("t2", "a", 1, other.send, other.close))
            assert hub.sockets("t1") == sockets and hub.sockets("t2") == 1
            assert len(channels._channels[channel_for("t1")]) == 1  # one subscription
            await channels.wait_published(poke_bytes(7), channel_for("t1"))  # another process
            await _settle()
            hub.deliver("t1", 8)  # a push in this process
            hub.deliver("t1", 8)  # its own echo from the channel: not newer, not sent
            assert [s.cursors for s in socks] == [[7, 8]] * sockets
            for i in (0, 1):  # one event per poke, the same object for every socket
                assert all(s.events[i] is socks[0].events[i] for s in socks)
            assert socks[0].events[0]["text"] == '{"type":"poke","cursor":7}'
            assert other.events == []  # another tenant's pokes
        assert hub.sockets("t1") == 0
        assert not channels._channels.get(channel_for("t1"))  # unsubscribed with the last

    asyncio.run(run())


def test_a_socket_that_cannot_take_pokes_does_not_hold_up_the_others() -> None:
    async def run() -> None:
        async with _hub(Devices(), [0.0]) as (hub, _), AsyncExitStack() as stack:
            stuck, free = Socket(held=True), Socket()
            for sock in (stuck, free):
                await stack.enter_async_context(hub.attach("t1", "a", 1, sock.send, sock.close))
            for cursor in range(1, 101):
                hub.deliver("t1", cursor)
            assert free.cursors == list(range(1, 101)) and stuck.cursors == []
            stuck.gate.set()
            await _settle()
            assert stuck.cursors == [1, 100]  # the one in flight, then the newest

    asyncio.run(run())


def test_revocation_is_checked_once_per_tenant_and_closes_only_revoked_sockets() -> None:
    devices, now = Devices(), [0.0]

    async def run() -> None:
        async with _hub(devices, now) as (hub, _), AsyncExitStack() as stack:
            a, b = Socket(), Socket()
            bs = [Socket() for _ in range(5)]
            await stack.enter_async_context(hub.attach("t1", "a", 1, a.send, a.close))
            for sock in [b, *bs]:
                await stack.enter_async_context(hub.attach("t1", "b", 1, sock.send, sock.close))
            now[0] = 2.0
            devices.revoked.add("b")
            devices.during = asyncio.Event()
            check = asyncio.create_task(hub.check("t1"))
            await _settle()
            late = Socket()  # device b again, authenticated while the query runs
            await stack.enter_async_context(hub.attach("t1", "b", 1, late.send, late.close))
            devices.during.set()
            await check
            await _settle()
            assert devices.calls == ["t1"]  # one query for the tenant's 8 sockets
            assert not a.closed and all(s.closed for s in [b, *bs]) and not late.closed
            hub.deliver("t1", 3)
            assert a.cursors == [3] and all(s.cursors == [] for s in [b, *bs])

    asyncio.run(run())
