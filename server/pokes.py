"""Pokes through Litestar Channels: through Redis pub/sub when ``FYNLO_REDIS_URL`` is set,
else through PostgreSQL's LISTEN/NOTIFY on PostgreSQL (:mod:`server.pgpokes`), so a push on
one server process pokes terminals connected to another; in-process only for the embedded
database without Redis, which ``fynlo serve`` runs in one process. A poke carries only the
tenant's new feed cursor; terminals pull.
Redis is never the only copy of anything: a lost poke costs latency, not data (terminals
also pull on reconnect and on a timer).

:class:`PokeHub` fans pokes out inside a process: a push here pokes this process's sockets
at once (and publishes for the others); one subscription per tenant brings the other
processes' pokes, each decoded once. A poke becomes one WebSocket frame (and one ASGI send
event), written to every socket of the tenant in one pass, with no task and no queue per
socket; a socket that cannot take it yet keeps one slot, the newest poke it has not sent
(pokes coalesce). Under uvicorn's ``websockets-sansio`` protocol the frame's bytes go
straight to each connection's transport (:func:`frame_writer`); under any other ASGI
server, or whenever that connection is not plainly open and writable, through its ASGI
``send``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Generator,
    Iterable,
)
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.types import WebSocketSendEvent

from fynlo_sync.errors import MissingDependencyError
from fynlo_sync.protocol import Poke, encode
from server import observe
from server.settings import Settings

if TYPE_CHECKING:
    from litestar.channels import Subscriber

    from server.accounts import DeviceState

__all__ = [
    "SERVER_SEND",
    "Outlet",
    "PokeHub",
    "RedisPublisher",
    "Send",
    "SendEvent",
    "WriteFrame",
    "channel_for",
    "frame_writer",
    "make_channels",
    "poke_bytes",
    "poke_event",
    "pokes_backend",
    "redis_channel",
    "redis_client",
    "text_frame",
]

_poke_decoder = msgspec.json.Decoder(Poke)
logger = logging.getLogger("fynlo.server.pokes")


def channel_for(tenant: str) -> str:
    """The channel of a tenant's pokes. (Litestar's Redis backend upper-cases channel names;
    tenant ids made by the server are lower-case hex, so they never collide.)"""
    return f"tenant.{tenant}"


def redis_channel(settings: Settings, tenant: str) -> str:
    """The Redis pub/sub channel that carries the tenant's pokes (see :func:`_prefixed_pubsub`)."""
    return f"{settings.redis_prefix}:{channel_for(tenant)}"


def poke_bytes(cursor: int) -> bytes:
    return encode(Poke(cursor=cursor))


def redis_client(settings: Settings) -> Any:
    if not settings.redis_url:
        return None
    try:
        from redis.asyncio import Redis
    except ModuleNotFoundError as exc:
        raise MissingDependencyError("redis", "redis") from exc
    return Redis.from_url(settings.redis_url)


def _prefixed_pubsub(redis: Any, prefix: str) -> ChannelsBackend:
    """Litestar's Redis pub/sub backend takes a ``key_prefix`` but its pub/sub channels do
    not use it, so two deployments sharing one Redis poked each other's tenants. This one
    puts ``<prefix>:`` in front of every channel it subscribes and publishes to, and takes it
    off the messages it yields."""
    from litestar.channels.backends.redis import RedisChannelsPubSubBackend

    head = prefix + ":"

    class Prefixed(RedisChannelsPubSubBackend):
        async def subscribe(self, channels: Iterable[str]) -> None:
            await super().subscribe([head + c for c in channels])

        async def unsubscribe(self, channels: Iterable[str]) -> None:
            await super().unsubscribe([head + c for c in channels])

        async def publish(self, data: bytes, channels: Iterable[str]) -> None:
            await super().publish(data, [head + c for c in channels])

        async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
            async for channel, data in super().stream_events():
                if channel.startswith(head):
                    yield channel[len(head) :], data

    return Prefixed(redis=redis, key_prefix=prefix)


class RedisPublisher:
    """Publishes pokes to Redis with the command written in the caller's turn of the event
    loop, so a push's publish leaves before this process's own fan-out (the other
    processes then poke their sockets beside this one, not after it). Through Litestar's
    backend the command went out a turn later, after the local fan-out: a publish ran in a
    task, and redis-py runs a write bounded by a socket timeout in a task of its own. Here
    a plain PUBLISH (what Litestar's publish script does for one channel; its subscribers
    read the same message) is stepped at once on a client of its own whose writes have no
    socket timeout, and the reply is awaited in a task, bounded by ``timeout_s``. When it
    needs a connection opened first (none idle in the pool), which redis-py cannot do
    outside a task (the SQLite backend notifies from a loop callback), the publish runs in
    a task instead, a turn later; nothing was sent by the step that failed."""

    def __init__(self, url: str, prefix: str, *, timeout_s: float = 5.0) -> None:
        try:
            from redis.asyncio import Redis
            from redis.exceptions import ConnectionError as RedisConnectionError
        except ModuleNotFoundError as exc:
            raise MissingDependencyError("redis", "redis") from exc
        self._not_sent: tuple[type[Exception], ...] = (RuntimeError, RedisConnectionError)
        # No socket timeout around a write, nor a connect deadline bound to the caller's task
        # (a publish is stepped in whatever task called it): ``timeout_s`` bounds it all.
        self._redis: Any = Redis.from_url(url, socket_timeout=None, socket_connect_timeout=None)
        self._head = prefix + ":"
        self._timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        """Open a connection ahead of the first publish (so that one is stepped at once too),
        within ``timeout_s``."""
        async with asyncio.timeout(self._timeout_s):
            await self._redis.ping()

    def warm(self) -> None:
        """:meth:`connect` in the background (start-up does not wait for Redis, which may
        come later); a failure is logged."""
        self._spawn(self._bounded(self._redis.ping(), "connecting to Redis for pokes"))

    def publish(self, channel: str, data: bytes) -> None:
        """Publish ``data`` on ``channel`` (unprefixed): written now when the connection can
        take it. A failure is logged (a lost poke costs latency, not data)."""
        coro: Coroutine[Any, Any, Any] = self._redis.publish(self._head + channel, data)
        try:
            first = coro.send(None)
        except StopIteration:
            return
        except self._not_sent:  # a connection to open, outside a task: again, in a task
            self._spawn(self._bounded(self._redis.publish(self._head + channel, data)))
            return
        except Exception:
            logger.warning("publishing a poke failed", exc_info=True)
            return
        self._spawn(self._bounded(_Resume(coro, first)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _bounded(self, pending: Awaitable[Any], what: str = "publishing a poke") -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await pending
        except Exception:  # TimeoutError, redis errors, OSError
            logger.warning("%s failed", what, exc_info=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._redis.aclose()


def pokes_backend(settings: Settings) -> str:
    """Which backend carries pokes between processes: ``redis`` when FYNLO_REDIS_URL is
    set, else ``postgres`` (LISTEN/NOTIFY) on PostgreSQL, else ``memory`` (one process
    only: ``fynlo serve`` refuses several workers with it)."""
    if settings.redis_url:
        return "redis"
    return "postgres" if settings.kind == "postgres" else "memory"


def make_channels(settings: Settings, redis: Any) -> ChannelsPlugin:
    backend: ChannelsBackend
    kind = pokes_backend(settings)
    if kind == "redis":
        backend = _prefixed_pubsub(redis, settings.redis_prefix)
    elif kind == "postgres":
        from server.pgpokes import PostgresPokes

        backend = PostgresPokes(settings.database_url)
    else:
        backend = MemoryChannelsBackend()
    return ChannelsPlugin(
        backend=backend, arbitrary_channels_allowed=True, create_ws_route_handlers=False
    )


class _Resume:
    """Awaiting it continues a coroutine that already ran up to its first suspension (on
    ``first``), exactly as if a task had awaited it from the start."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, None]:
        value = self.first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # a cancellation reaches the inner coroutine too
                try:
                    value = self.coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = self.coro.send(sent)
                except StopIteration:
                    return


#: A poke as an ASGI send event, built once per poke and given to every socket's ``send``.
SendEvent = WebSocketSendEvent
#: A socket's ASGI ``send``.
Send = Callable[[SendEvent], Awaitable[None]]


def poke_event(cursor: int, text: str | None = None) -> SendEvent:
    """The ASGI ``websocket.send`` event of a poke (``text``: its JSON, if already at hand)."""
    text = text if text is not None else poke_bytes(cursor).decode()
    return {"type": "websocket.send", "bytes": None, "text": text}


#: Writes a WebSocket frame's bytes to one connection now, if it can (else ``False``).
WriteFrame = Callable[[bytes], bool]

#: The scope key under which the app keeps the ASGI server's own ``send`` of a WebSocket
#: (before Litestar's and the middlewares' wrappers): :func:`frame_writer` looks at it.
SERVER_SEND = "fynlo.server_send"


def text_frame(payload: bytes) -> bytes:
    """A WebSocket text message as one frame (RFC 6455 5.2): FIN and opcode 1, the payload
    length, no mask (a server's frames are never masked), the payload. The same bytes for
    every socket that negotiated no extension."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, n))
    elif n < 1 << 16:
        head = b"\x81\x7e" + n.to_bytes(2, "big")
    else:
        head = b"\x81\x7f" + n.to_bytes(8, "big")
    return head + payload


def frame_writer(send: object) -> WriteFrame | None:
    """A writer of ready-made frames straight to the connection behind ``send``, when
    ``send`` is uvicorn's ``websockets-sansio`` protocol's own (the ASGI server's, not a
    wrapper) and the connection negotiated no extension; else ``None`` (the ASGI ``send``
    then writes every poke). This reaches into uvicorn's objects, so every attribute it
    needs is checked here once, and the writer declines (``False``: the caller falls back
    to the ASGI ``send``, which waits or raises as it should) unless the connection is
    open, not closing, not paused for flow control and has nothing of websockets' own
    waiting to go out. Writing the frame is then what that ``send`` does for a text
    message, less the wrappers and the per-socket framing: websockets' protocol keeps no
    state about data frames sent."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import (
            WebSocketsSansIOProtocol,
        )
        from websockets.protocol import State
    except ImportError:  # pragma: no cover - uvicorn and websockets come with the server
        return None
    protocol = getattr(send, "__self__", None)
    if (
        not isinstance(protocol, WebSocketsSansIOProtocol)
        or getattr(send, "__func__", None) is not WebSocketsSansIOProtocol.send
    ):
        return None
    conn: Any = getattr(protocol, "conn", None)
    transport = getattr(protocol, "transport", None)
    writable = getattr(protocol, "writable", None)
    if (
        not isinstance(getattr(conn, "writes", None), list)
        or getattr(conn, "extensions", None) != []
        or not isinstance(getattr(conn, "state", None), State)
        or not isinstance(transport, asyncio.Transport)
        or not isinstance(writable, asyncio.Event)
        or not isinstance(getattr(protocol, "close_sent", None), bool)
        or not isinstance(getattr(protocol, "disconnected", None), bool)
    ):
        return None
    is_open = State.OPEN

    def write(frame: bytes) -> bool:
        if (
            protocol.close_sent
            or protocol.disconnected
            or conn.state is not is_open
            or conn.writes
            or not writable.is_set()
            or transport.is_closing()
        ):
            return False
        transport.write(frame)
        return True

    return write


class Outlet:
    """One poke socket. :meth:`offer` writes a poke to the socket at once, in the caller's
    turn of the event loop (no task, no queue), when the socket can take it: its frame
    straight to the connection when there is a ``direct`` writer that accepts it, else
    through the ASGI ``send``. When the socket cannot take it (the ASGI ``send`` suspends:
    the socket's write buffer is full), the write finishes in a task and the socket keeps
    one slot, the newest poke it has not sent, which replaces any older unsent one (only the
    newest cursor matters). Cursors go out in increasing order, and the newest offered is
    always sent while the socket is open."""

    __slots__ = (
        "_close",
        "_direct",
        "_event",
        "_send",
        "_task",
        "closed",
        "cursor",
        "epoch",
        "node_id",
        "sent",
        "since",
        "taken",
    )

    def __init__(
        self,
        node_id: str,
        epoch: int,
        send: Send,
        close: Callable[[], Awaitable[None]],
        since: float = 0.0,
        direct: WriteFrame | None = None,
    ) -> None:
        self.node_id = node_id
        self.epoch = epoch
        self.since = since
        self._send = send
        self._close = close
        self._direct = direct
        self.cursor = -1  # the newest cursor offered
        self.sent = -1  # the newest cursor written to the socket
        self.taken = -1  # the newest cursor written or being written
        self.closed = False
        self._event: SendEvent = poke_event(-1, "")
        self._task: asyncio.Task[None] | None = None

    @property
    def writing(self) -> bool:
        """Is a write waiting for the socket to drain?"""
        return self._task is not None and not self.closed

    def offer(self, cursor: int, event: SendEvent, frame: bytes | None = None) -> bool:
        """Offer the poke of ``cursor`` (its ASGI send event, and its frame when the caller
        made one); ``True`` when it was written now and counted by the caller (the hub
        counts a pass's writes at once), ``False`` when not (or counted here later)."""
        if cursor <= self.cursor or self.closed:
            return False
        if self._task is not None:
            if self.cursor > self.taken:
                observe.POKES_COALESCED.inc()  # the unsent one in the slot is replaced
            self.cursor = cursor
            self._event = event
            return False
        self.cursor = cursor
        self._event = event
        if frame is not None and self._direct is not None:
            try:
                wrote = self._direct(frame)
            except Exception:  # the socket is gone: the ASGI send below says so its way
                wrote = False
            if wrote:
                self.taken = self.sent = cursor
                return True
        return self._write_now(cursor, event)

    def _write_now(self, cursor: int, event: SendEvent) -> bool:
        self.taken = cursor
        coro = self._send(event)
        if not isinstance(coro, Coroutine):  # an ASGI server's own awaitable: no fast path
            self._task = asyncio.get_running_loop().create_task(self._finish(coro, None, cursor))
            return False
        try:
            blocked_on = coro.send(None)
        except StopIteration:
            self.sent = cursor
            return True
        except Exception:  # the socket is gone; its handler sees the disconnect and detaches
            self.closed = True
            return False
        self._task = asyncio.get_running_loop().create_task(self._finish(coro, blocked_on, cursor))
        return False

    async def _finish(self, pending: Awaitable[None], blocked_on: Any, cursor: int) -> None:
        try:
            if isinstance(pending, Coroutine):
                await _Resume(pending, blocked_on)
            else:
                await pending
            self._wrote(cursor)
            while self.cursor > self.taken and not self.closed:  # the newest that came meanwhile
                cursor = self.taken = self.cursor
                await self._send(self._event)
                self._wrote(cursor)
        except Exception:
            self.closed = True
        finally:
            self._task = None

    def _wrote(self, cursor: int) -> None:
        self.sent = cursor
        observe.POKES_SENT.inc()

    def revoke(self) -> None:
        """Send nothing more; close the socket (code 4401, by the ``close`` it was given)."""
        if self.closed:
            return
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.ensure_future(self._close())

    def stop(self) -> None:
        """The socket is gone: drop any write still waiting."""
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            self._task = None


def _fan_out(outlets: Iterable[Outlet], cursor: int, data: bytes) -> None:
    """One poke (its JSON ``data``) to every outlet in one pass: one ASGI event and one
    frame, made once, the same objects for every socket; the writes made now counted once."""
    event = poke_event(cursor, data.decode())
    frame = text_frame(data)
    written = 0
    for outlet in outlets:
        written += outlet.offer(cursor, event, frame)
    if written:
        observe.POKES_SENT.inc(written)


class _Tenant:
    """A tenant's sockets in this process, their one subscription (when pokes cross
    processes), the sweeper of revoked devices, and the verdicts of its last check."""

    def __init__(self) -> None:
        self.outlets: set[Outlet] = set()
        self.subscriber: Subscriber | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.valid: dict[tuple[str, int], bool] = {}


class PokeHub:
    """Pokes to every poke socket of this process. A poke is decoded once (from the
    channel) or made once (by :meth:`deliver`, from a push in this process), turned into
    one ASGI send event, and offered to each socket's :class:`Outlet`, which writes it at
    once or keeps it as its newest unsent poke. One Channels subscription per tenant (not
    per socket) brings the pokes of other processes; ``channels=None`` (one process: the
    embedded database without Redis) needs none. Whether each socket's device is still
    valid (not revoked, same token epoch) is checked for the whole tenant at once, every
    ``recheck_s`` seconds; a revoked device's sockets are closed then and sent nothing
    more."""

    def __init__(
        self,
        channels: ChannelsPlugin | None,
        devices: Callable[[str], Awaitable[list[DeviceState]]],
        *,
        recheck_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channels = channels
        self._devices = devices
        self._recheck_s = recheck_s
        self._monotonic = monotonic
        self._tenants: dict[str, _Tenant] = {}

    def sockets(self, tenant: str) -> int:
        found = self._tenants.get(tenant)
        return 0 if found is None else len(found.outlets)

    @asynccontextmanager
    async def attach(
        self,
        tenant: str,
        node_id: str,
        epoch: int,
        send: Send,
        close: Callable[[], Awaitable[None]],
        direct: WriteFrame | None = None,
    ) -> AsyncIterator[Outlet]:
        """A socket of ``tenant`` joins until the block ends: ``send`` writes an ASGI event
        to it, ``direct`` (when given) a poke's frame, ``close`` closes it for a revoked
        device."""
        outlet = Outlet(node_id, epoch, send, close, self._monotonic(), direct)
        entry = self._tenants.get(tenant)
        if entry is None:
            entry = self._tenants[tenant] = _Tenant()
            entry.tasks.append(asyncio.create_task(self._sweep(tenant, entry)))
            if self._channels is not None:
                entry.subscriber = await self._channels.subscribe([channel_for(tenant)])
                entry.tasks.append(asyncio.create_task(self._relay(entry, entry.subscriber)))
        entry.outlets.add(outlet)
        # The socket was authenticated just now: its device is valid until the next check.
        entry.valid.setdefault((node_id, epoch), True)
        try:
            yield outlet
        finally:
            outlet.stop()
            entry.outlets.discard(outlet)
            if not entry.outlets and self._tenants.get(tenant) is entry:
                del self._tenants[tenant]
                for task in entry.tasks:
                    task.cancel()
                if entry.subscriber is not None and self._channels is not None:
                    await self._channels.unsubscribe(entry.subscriber)

    def deliver(self, tenant: str, cursor: int, data: bytes | None = None) -> None:
        """Offer the poke to the tenant's sockets in this process, now (``data``: its
        JSON, if already at hand)."""
        entry = self._tenants.get(tenant)
        if entry is not None:
            _fan_out(entry.outlets, cursor, poke_bytes(cursor) if data is None else data)

    @staticmethod
    def first(outlet: Outlet, cursor: int) -> None:
        """Offer a socket that just joined the cursor now."""
        _fan_out((outlet,), cursor, poke_bytes(cursor))

    async def _relay(self, entry: _Tenant, subscriber: Subscriber) -> None:
        async for data in subscriber.iter_events():
            try:
                cursor = _poke_decoder.decode(data).cursor
            except msgspec.DecodeError:
                continue  # not a poke (nothing else is published on these channels)
            observe.POKES_RECEIVED.inc()
            _fan_out(entry.outlets, cursor, data)

    async def _sweep(self, tenant: str, entry: _Tenant) -> None:
        while True:
            await asyncio.sleep(self._recheck_s)
            await self.check(tenant)

    async def check(self, tenant: str) -> None:
        """Ask which of the tenant's devices are still valid (one query) and close the
        sockets of the others. A socket that attached while the query ran keeps its place
        (its device was authenticated after the query began)."""
        entry = self._tenants.get(tenant)
        if entry is None:
            return
        began = self._monotonic()
        try:
            states = await self._devices(tenant)
        except Exception:  # the database is away: keep the last verdicts, try again later
            logger.warning("poke socket recheck failed for tenant %s", tenant, exc_info=True)
            return
        entry.valid = {(s.node_id, s.epoch): not s.revoked for s in states}
        for outlet in list(entry.outlets):
            if outlet.since < began and not entry.valid.get((outlet.node_id, outlet.epoch), False):
                outlet.revoke()
