"""Pokes published to a real Redis by :class:`server.pokes.RedisPublisher`: the PUBLISH is
written in the caller's turn of the event loop when a connection is idle (from a task, as
a push on PostgreSQL notifies, and from a loop callback, as the SQLite backend's commit
does), before anything else on the loop runs: a subscriber reading with the loop blocked
gets it. A cold
publisher (no connection yet) still publishes, a turn later; with Redis away a publish
never raises and its task ends. No timing is asserted."""

from __future__ import annotations

import asyncio
import secrets
import socket
from typing import Any

import pytest
import redis

from server.pokes import RedisPublisher, channel_for, poke_bytes

pytestmark = [pytest.mark.redis]


#: The subscribers' clients, kept alive (a client closes its connections when collected).
_clients: list[Any] = []


def _subscriber(url: str, channel: str) -> Any:
    client: Any = redis.Redis.from_url(url)
    _clients.append(client)
    sub = client.pubsub()
    sub.subscribe(channel)
    confirmed = sub.get_message(timeout=10)
    assert confirmed is not None and confirmed["type"] == "subscribe"
    return sub


def _message_now(sub: Any) -> bytes | None:
    """The next message, read while the caller blocks its event loop: only what was
    written before the caller's turn ended can arrive."""
    message = sub.get_message(ignore_subscribe_messages=True, timeout=10)
    return None if message is None else bytes(message["data"])


def test_a_publish_is_written_in_the_callers_turn(redis_url: str) -> None:
    prefix = "FYNLO_TEST_" + secrets.token_hex(4)
    sub = _subscriber(redis_url, f"{prefix}:{channel_for('t')}")

    async def run() -> list[bytes | None]:
        publisher = RedisPublisher(redis_url, prefix)
        await publisher.connect()
        got: list[bytes | None] = [None, None]
        # In a task (a push on PostgreSQL notifies inside its handler).
        publisher.publish(channel_for("t"), poke_bytes(1))
        got[0] = _message_now(sub)
        while publisher._tasks:  # its reply: the connection is idle again
            await asyncio.sleep(0.01)
        # From a loop callback, in no task (the SQLite backend's commit hands the poke over).
        done = asyncio.get_running_loop().create_future()

        def callback() -> None:
            publisher.publish(channel_for("t"), poke_bytes(2))
            done.set_result(_message_now(sub))

        asyncio.get_running_loop().call_soon(callback)
        got[1] = await done
        while publisher._tasks:  # the replies
            await asyncio.sleep(0.01)
        await publisher.aclose()
        return got

    try:
        assert asyncio.run(run()) == [poke_bytes(1), poke_bytes(2)]
    finally:
        sub.close()


@pytest.mark.parametrize("in_task", [True, False])
def test_a_cold_publisher_publishes_a_turn_later(redis_url: str, in_task: bool) -> None:
    prefix = "FYNLO_TEST_" + secrets.token_hex(4)
    sub = _subscriber(redis_url, f"{prefix}:{channel_for('t')}")

    async def run() -> bytes | None:
        publisher = RedisPublisher(redis_url, prefix)  # no connection opened yet
        if in_task:
            publisher.publish(channel_for("t"), poke_bytes(3))
        else:
            asyncio.get_running_loop().call_soon(publisher.publish, channel_for("t"), poke_bytes(3))
            await asyncio.sleep(0)
        message = await asyncio.to_thread(_message_now, sub)  # the loop runs meanwhile
        while publisher._tasks:
            await asyncio.sleep(0.01)
        await publisher.aclose()
        return message

    try:
        assert asyncio.run(run()) == poke_bytes(3)
    finally:
        sub.close()


def test_with_redis_away_a_publish_never_raises_and_its_task_ends() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now

    async def run() -> int:
        publisher = RedisPublisher(f"redis://127.0.0.1:{port}", "X", timeout_s=1.0)
        with pytest.raises((redis.ConnectionError, TimeoutError)):
            await publisher.connect()
        publisher.warm()  # what start-up does: not waited for, and it ends
        for cursor in range(3):
            publisher.publish(channel_for("t"), poke_bytes(cursor))
            await asyncio.sleep(0)
        for _ in range(1000):
            if not publisher._tasks:
                break
            await asyncio.sleep(0.01)
        left = len(publisher._tasks)
        await publisher.aclose()
        return left

    assert asyncio.run(run()) == 0
