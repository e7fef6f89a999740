"""Route handlers. Each decodes, calls the library, encodes: the engine decides.

The caller is ``request.user`` (a :class:`~server.auth.Device`), set by the JWT security
backend; every read and write is scoped to its tenant, and a push may carry only its node's
ops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from random import Random
from typing import Annotated, Any, Literal

from litestar import Request, WebSocket, get, post, websocket
from litestar.channels import ChannelsPlugin
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import Response
from litestar.security.jwt import JWTAuth
from msgspec import Struct

from fynlo_sync.canonical import MAX_SAFE_INTEGER
from fynlo_sync.errors import FynloError, StoreError
from fynlo_sync.hlc import HybridClock
from fynlo_sync.ops import Record
from fynlo_sync.plugins import Registry
from fynlo_sync.protocol import PushResult, WirePage
from fynlo_sync.schema import domains_document
from fynlo_sync.worker import EffectWorker
from server import observe
from server.accounts import DeviceState, Grant
from server.auth import WS_UNAUTHENTICATED, AccessToken, Device, issue_access_token
from server.backends import EmbeddedBackend, PostgresBackend
from server.conflicts import ResolveRequest, list_conflicts, resolve_conflict
from server.effects import list_effects
from server.pokes import (
    SERVER_SEND,
    PokeHub,
    RedisPublisher,
    channel_for,
    frame_writer,
    poke_bytes,
    pokes_backend,
)
from server.settings import Settings
from server.throttle import PushSlots, SocketQuota

__all__ = ["ROUTES", "Runtime"]

DeviceRequest = Request[Device, AccessToken, Any]

_log = logging.getLogger("fynlo.server")


class Runtime:
    """What the handlers share: built by ``create_app``; the lifespan opens ``backend_``.
    (A plain class, not a dataclass: Litestar would try to convert a dataclass dependency.)"""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        clock: HybridClock,
        rng: Random,
        channels: ChannelsPlugin,
        redis: Any = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.clock = clock
        self.rng = rng
        self.channels = channels
        self.redis = redis
        self.auth: JWTAuth[Device, AccessToken] | None = None
        self.backend_: EmbeddedBackend | PostgresBackend | None = None
        #: The effect worker the lifespan runs (None before start-up).
        self.effects: EffectWorker | None = None
        #: Pokes cross processes (Redis, LISTEN/NOTIFY), or stay in this one (memory).
        self.crosses = pokes_backend(settings) != "memory"
        #: With Redis, pokes are published with their command written at once (else
        #: through the Channels backend, in a task).
        self.publisher = (
            RedisPublisher(settings.redis_url, settings.redis_prefix)
            if settings.redis_url
            else None
        )
        self._publishing: set[asyncio.Task[None]] = set()
        self.hub = PokeHub(
            channels if self.crosses else None,
            self._devices,
            recheck_s=settings.ws_recheck_ms / 1000,
        )
        self.sockets = SocketQuota(settings.max_sockets_per_device)
        self.pushes = PushSlots(settings.max_pushes_in_flight_per_tenant)

    async def _devices(self, tenant: str) -> list[DeviceState]:
        return await self.backend.accounts.devices(tenant)

    @property
    def backend(self) -> EmbeddedBackend | PostgresBackend:
        if self.backend_ is None:
            raise StoreError("the server is not started (its lifespan has not run)")
        return self.backend_

    def notify(self, tenant: str, cursor: int) -> None:
        """The tenant's feed moved to ``cursor``: when pokes cross processes, publish it for
        the others first (with Redis the command is written now, in this turn; on
        PostgreSQL the publishing task's first step sends it before it waits for the
        answer), then poke the sockets of this process on the loop's next turn (not inside
        the push), so the other processes' fan-out runs beside this one's. This process
        ignores its own echo (the cursor is not newer)."""
        data = poke_bytes(cursor)
        loop = asyncio.get_running_loop()
        if self.publisher is not None:
            self.publisher.publish(channel_for(tenant), data)
        elif self.crosses:
            task = loop.create_task(self._publish(data, channel_for(tenant)))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)
        loop.call_soon(self.hub.deliver, tenant, cursor, data)

    async def _publish(self, data: bytes, channel: str) -> None:
        try:
            await self.channels.wait_published(data, channel)
        except Exception:  # a lost poke costs latency, not data: terminals pull anyway
            _log.warning("publishing a poke failed", exc_info=True)

    def tokens(self, grant: Grant) -> TokenResponse:
        assert self.auth is not None
        return TokenResponse(
            access_token=issue_access_token(self.auth, grant),
            refresh_token=grant.refresh_token,
            token_type="Bearer",
            expires_in=self.settings.access_ttl_s,
            node_id=grant.node_id,
            tenant_id=grant.tenant_id,
        )


class DeviceAuthRequest(Struct, frozen=True):
    enrollment_code: str


class RefreshRequest(Struct, frozen=True):
    refresh_token: str


class TokenResponse(Struct, frozen=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
    node_id: str
    tenant_id: str


class WsTicket(Struct, frozen=True):
    ticket: str
    expires_in: int


class ConflictList(Struct, frozen=True):
    conflicts: list[Record]


class Health(Struct, frozen=True):
    status: str
    checks: dict[str, str] = {}


#: Token responses must never be cached (RFC 6749 section 5.1).
NO_STORE = CacheControlHeader(no_store=True)


@post(
    "/v1/auth/device",
    status_code=200,
    exclude_from_auth=True,
    tags=["auth"],
    cache_control=NO_STORE,
)
async def auth_device(
    data: JSONBody[DeviceAuthRequest], rt: NamedDependency[Runtime]
) -> TokenResponse:
    """Trade a one-use enrollment code for an access token and a refresh token."""
    return rt.tokens(await rt.backend.accounts.redeem(data.enrollment_code))


@post(
    "/v1/auth/refresh",
    status_code=200,
    exclude_from_auth=True,
    tags=["auth"],
    cache_control=NO_STORE,
)
async def auth_refresh(
    data: JSONBody[RefreshRequest], rt: NamedDependency[Runtime]
) -> TokenResponse:
    """Rotate a refresh token. Reusing a used one revokes the device's tokens (401)."""
    return rt.tokens(await rt.backend.accounts.refresh(data.refresh_token))


@post("/v1/sync/push", status_code=200, tags=["sync"])
async def push(request: DeviceRequest, rt: NamedDependency[Runtime]) -> PushResult:
    """Apply a Batch (JSON). The body is verified as sent: checksum over its ops first."""
    device = request.user
    start = time.perf_counter()
    try:
        with rt.pushes.hold(device.tenant_id):  # 429 when the tenant's slots are all taken
            result = await rt.backend.push(
                device.tenant_id,
                await request.body(),
                node_id=device.node_id,
                client_address=None if request.client is None else request.client.host,
            )
    except FynloError as exc:
        observe.push_failed(device.tenant_id, device.node_id, exc, start)
        raise
    observe.pushed(device.tenant_id, device.node_id, result, start)
    return result


@get("/v1/sync/pull", tags=["sync"])
async def pull(
    request: DeviceRequest,
    rt: NamedDependency[Runtime],
    cursor: Annotated[
        int, QueryParameter(ge=0, le=MAX_SAFE_INTEGER, description="the last feed seq seen")
    ] = 0,
    limit: Annotated[
        int | None, QueryParameter(ge=1, le=MAX_SAFE_INTEGER, description="page size")
    ] = None,
    compact: Annotated[
        int, QueryParameter(ge=0, le=1, description="1: a compacted page (protocol 1.1)")
    ] = 0,
) -> WirePage:
    """The tenant's changes after ``cursor``, in feed order, with the page's checksum; with
    ``compact=1`` the current state of each record changed after ``cursor``, once."""
    device = request.user
    start = time.perf_counter()
    page = await rt.backend.pull(
        device.tenant_id, cursor, limit, compact=bool(compact), node_id=device.node_id
    )
    observe.pulled(page, start)
    return page


@post("/v1/sync/ws-ticket", status_code=200, cache_control=NO_STORE)
async def ws_ticket(request: DeviceRequest, rt: NamedDependency[Runtime]) -> WsTicket:
    """A one-time ticket for one WebSocket upgrade: ``GET /v1/sync/ws?ticket=<ticket>``
    within ``expires_in`` seconds, instead of putting the access token in the URL."""
    device = request.user
    ticket = await rt.backend.accounts.issue_ticket(
        device.tenant_id, device.node_id, request.auth.ep
    )
    return WsTicket(ticket, rt.settings.ws_ticket_ttl_s)


@websocket("/v1/sync/ws")
async def pokes(socket: WebSocket[Device, AccessToken, Any], rt: NamedDependency[Runtime]) -> None:
    """Sends ``{"type":"poke","cursor":N}`` when the tenant's feed moves (first the cursor
    now, on connect): each poke is written to every socket of the tenant in one pass; a
    socket that cannot take it yet gets only the newest poke it missed. Messages from the
    client are ignored. A revoked device's socket is closed (code 4401) within
    ``FYNLO_WS_RECHECK_MS``, whether or not a poke is due. A device may hold
    ``FYNLO_WS_PER_DEVICE`` sockets per process; a further one is closed with 4429."""
    await socket.accept()
    device = socket.user
    with rt.sockets.hold(device) as allowed:
        if not allowed:
            await socket.close(code=WS_TOO_MANY, reason="too many poke sockets for this device")
            return
        with observe.SOCKETS_OPEN.track_inprogress():
            await _serve_pokes(socket, rt, device)


#: WebSocket close code when a device holds too many poke sockets (4000 + HTTP 429).
WS_TOO_MANY = 4429


async def _serve_pokes(
    socket: WebSocket[Device, AccessToken, Any], rt: Runtime, device: Device
) -> None:
    async def close() -> None:
        await socket.close(code=WS_UNAUTHENTICATED, reason="the device's tokens are revoked")

    tenant = device.tenant_id
    # Pokes' frames straight to the connection, when uvicorn's websockets-sansio protocol
    # serves it (else through the ASGI send, with Litestar's and the middlewares' wrappers).
    direct = frame_writer(socket.scope.get(SERVER_SEND))
    async with rt.hub.attach(
        tenant, device.node_id, socket.auth.ep, socket.send, close, direct
    ) as outlet:
        rt.hub.first(outlet, await rt.backend.cursor(tenant))
        while (await socket.receive())["type"] != "websocket.disconnect":
            continue


@get("/v1/conflicts", tags=["conflicts"])
async def conflicts(
    request: DeviceRequest,
    rt: NamedDependency[Runtime],
    which: Annotated[Literal["open", "resolved", "all"], QueryParameter(name="state")] = "open",
) -> ConflictList:
    """The tenant's parked conflicts (records of the ``conflicts`` collection)."""
    return ConflictList(await list_conflicts(rt.backend, request.user.tenant_id, which))


@post("/v1/conflicts/{conflict_id:str}/resolve", status_code=200, tags=["conflicts"])
async def resolve(
    request: DeviceRequest,
    rt: NamedDependency[Runtime],
    conflict_id: FromPath[str],
    data: JSONBody[ResolveRequest],
) -> PushResult:
    """Resolve a parked conflict; the server authors the ops as node ``server`` (for
    ``actor``, who needs ``conflict.resolve`` when the staff plugin checks actors)."""
    return await resolve_conflict(
        rt.backend, request.user.tenant_id, conflict_id, data, rt.registry
    )


@get("/health/live", exclude_from_auth=True, tags=["health"])
async def live() -> Health:
    return Health("ok")


@get("/health/ready", exclude_from_auth=True, tags=["health"])
async def ready(rt: NamedDependency[Runtime]) -> Response[Health]:
    """200 when the database (and Redis, when configured) answer; 503 otherwise."""
    checks: dict[str, str] = {}
    try:
        await rt.backend.ping()
        checks["database"] = "ok"
    except Exception as exc:  # asyncpg, sqlite3 and OSError all mean "not ready"
        checks["database"] = f"failed: {type(exc).__name__}"
    if rt.redis is not None:
        try:
            await rt.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # redis.exceptions.*, OSError
            checks["redis"] = f"failed: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return Response(Health("ok" if ok else "unavailable", checks), status_code=200 if ok else 503)


@get("/v1/schema/domains", tags=["schema"])
async def schema_domains(rt: NamedDependency[Runtime]) -> dict[str, Any]:
    """Every plugin's collections, field types and kinds, strategies and state tables: the
    domains document (docs/protocol.md section 21), the same as `fynlo schema export`."""
    return domains_document(rt.registry)


ROUTES = [
    auth_device,
    auth_refresh,
    push,
    pull,
    ws_ticket,
    pokes,
    conflicts,
    resolve,
    list_effects,
    schema_domains,
    live,
    ready,
]
