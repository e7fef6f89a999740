"""The poke hub over a real Channels plugin (memory backend): one subscription per tenant,
pokes coalesced per socket to the newest unsent cursor, tenants kept apart, and the
revocation check made once per tenant, not once per socket."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

import pytest
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend

from server.accounts import DeviceState
from server.pokes import Outlet, PokeHub, channel_for, poke_bytes


def test_an_outlet_keeps_only_the_newest_unsent_poke() -> None:
    outlet = Outlet("till", 1)

    async def run() -> list[str]:
        outlet.offer(3, "three")
        outlet.offer(5, "five")
        outlet.offer(4, "four")  # older than what is waiting: ignored
        first = await outlet.next()
        outlet.offer(5, "five again")  # not newer than what was sent
        waiting = outlet.wake.is_set()
        outlet.offer(6, "six")
        return [first, str(waiting), await outlet.next()]

    assert asyncio.run(run()) == ["five", "False", "six"]


class Devices:
    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.calls: list[str] = []

    async def __call__(self, tenant: str) -> list[DeviceState]:
        self.calls.append(tenant)
        return [DeviceState(tenant, n, 1, n in self.revoked) for n in ("a", "b")]


async def _drain(outlet: Outlet) -> str | None:
    try:
        return await asyncio.wait_for(outlet.next(), 0.5)
    except TimeoutError:
        return None


@pytest.mark.parametrize("sockets", [1, 50])
def test_hub_fans_out_once_per_tenant(sockets: int) -> None:
    devices = Devices()
    now = [0.0]

    async def run() -> None:
        channels = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
        async with channels:
            hub = PokeHub(channels, devices, recheck_s=1.0, monotonic=lambda: now[0])
            async with (
                hub.attach("t1", "a", 1) as first,
                hub.attach("t2", "a", 1) as other_tenant,
            ):
                extra = [await _enter(hub, "t1", "b") for _ in range(sockets - 1)]
                assert hub.sockets("t1") == sockets and hub.sockets("t2") == 1
                assert len(channels._channels[channel_for("t1")]) == 1  # one subscription
                for cursor in (1, 2, 3):
                    await channels.wait_published(poke_bytes(cursor), channel_for("t1"))
                await asyncio.sleep(0.05)
                # Nobody sent the first two yet: every socket holds only cursor 3.
                for outlet in [first, *(o for o, _ in extra)]:
                    assert await _drain(outlet) == '{"type":"poke","cursor":3}'
                    assert not outlet.wake.is_set()
                assert not other_tenant.wake.is_set()
                # The revocation check: one query for the whole tenant per window.
                checks = [await hub.valid("t1", o) for o in [first, *(o for o, _ in extra)]]
                assert all(checks) and devices.calls == []  # authenticated just now
                now[0] = 2.0
                devices.revoked.add("b")
                checks = [await hub.valid("t1", o) for o in [first, *(o for o, _ in extra)]]
                assert checks == [True] + [False] * (sockets - 1)
                assert devices.calls == ["t1"]
                for _, cm in extra:
                    await cm.__aexit__(None, None, None)
            assert hub.sockets("t1") == 0
            assert not channels._channels.get(channel_for("t1"))  # unsubscribed with the last

    asyncio.run(run())


async def _enter(
    hub: PokeHub, tenant: str, node: str
) -> tuple[Outlet, AbstractAsyncContextManager[Outlet]]:
    cm = hub.attach(tenant, node, 1)
    return await cm.__aenter__(), cm
