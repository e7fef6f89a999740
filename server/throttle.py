"""Rate limits and quotas: Litestar's ``RateLimitConfig``, three of them.

* **per device** (every authenticated request of one node): ``FYNLO_RATE_DEVICE`` a minute;
* **per tenant** (all its devices together): ``FYNLO_RATE_TENANT`` a minute;
* **per client address** on the unauthenticated routes (``/v1/auth/*``):
  ``FYNLO_RATE_ANON`` a minute.

The counters live in the app's ``rate_limit`` store: Redis when ``FYNLO_REDIS_URL`` is set
(so a limit holds across server processes, under ``<FYNLO_REDIS_PREFIX>_RATE``), else
memory. A refusal is a ``429`` problem ``rate-limited`` with ``Retry-After`` (seconds).

**Refused devices are refused cheaply.** Once a limit refuses a device, every request of
it is refused until the limit's window ends (a fixed window), so this process remembers
that (:class:`Refusals`) and refuses the device's next requests right after checking its
token's signature, before the device is looked up in the database: a flood costs a
signature check per request, not a query on the store every other tenant waits on. The
window remembered ends a little before the limiter's, never after.

**Remembered tokens are refused before Litestar.** The refused device's access token
(whose signature was checked when it was refused) is remembered too, in a bounded LRU
keyed by the token's exact bytes (:meth:`Refusals.vouch`). :func:`early_refusal`, an ASGI
wrapper around Litestar's handler (before routing, middleware, dependency injection, the
token's decoding and the request log), answers a request carrying such a token with the same
429 problem at once, after discarding its body: a flood's refusal costs an HTTP parse and
a dictionary lookup. A token never seen by a successful signature check is never in it,
and it is forgotten when it expires; refusals counted in ``fynlo_rate_refused_early``.

**Pushes in flight per tenant.** A tenant may have at most
``FYNLO_PUSHES_IN_FLIGHT`` pushes being applied at once in this process
(:class:`PushSlots`); a further one is answered 429 ``rate-limited``
(``limit: "pushes-in-flight"``, ``Retry-After: 1``) before its body is read, so one tenant
cannot fill the event loop and the store's queue with its pushes.

Also here: the cap on poke sockets per device (per process). (Argon2 runs on worker
threads, two at a time: :class:`server.accounts.Accounts`.)
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec
from litestar import Request
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.types import ASGIApp
from prometheus_client import Counter

from fynlo_sync.errors import RateLimitedError
from server.auth import Device, bearer
from server.settings import Settings

__all__ = [
    "EARLY_REFUSALS",
    "RATE_STORE",
    "PushSlots",
    "Refusals",
    "SocketQuota",
    "early_refusal",
    "rate_limits",
    "rate_store",
]

RATE_STORE = "rate_limit"

#: Requests refused 429 from :class:`Refusals`, before their device was looked up.
EARLY_REFUSALS = Counter(
    "fynlo_rate_refused_early", "requests of a rate-limited device refused before its lookup"
)

#: Paths no limit applies to (probes and the internal endpoints).
_EXEMPT = ["^/health/", "^/metrics", "^/schema"]


def _user(request: Request[Any, Any, Any]) -> Device | None:
    user = request.scope.get("user")
    return user if isinstance(user, Device) else None


def _device_key(request: Request[Any, Any, Any]) -> str:
    user = _user(request)
    return "anon" if user is None else f"device:{user.tenant_id}:{user.node_id}"


def _tenant_key(request: Request[Any, Any, Any]) -> str:
    user = _user(request)
    return "anon" if user is None else f"tenant:{user.tenant_id}"


def _address_key(request: Request[Any, Any, Any]) -> str:
    return "addr:" + get_remote_address(request)


async def _authenticated(request: Request[Any, Any, Any]) -> bool:
    return _user(request) is not None


async def _anonymous(request: Request[Any, Any, Any]) -> bool:
    return request.url.path.startswith("/v1/auth/")


def rate_limits(settings: Settings) -> list[RateLimitConfig]:
    """The three limits (a limit of 0 turns that one off)."""
    specs = [
        (settings.rate_device_per_min, _device_key, _authenticated),
        (settings.rate_tenant_per_min, _tenant_key, _authenticated),
        (settings.rate_anon_per_min, _address_key, _anonymous),
    ]
    return [
        RateLimitConfig(
            rate_limit=("minute", limit),
            exclude=_EXEMPT,
            identifier_for_request=key,
            check_throttle_handler=check,
            store=RATE_STORE,
        )
        for limit, key, check in specs
        if limit > 0
    ]


def rate_store(settings: Settings, redis: Any) -> Store:
    if redis is None:
        return MemoryStore()
    from litestar.stores.redis import RedisStore

    return RedisStore(redis, namespace=f"{settings.redis_prefix}_RATE")


class SocketQuota:
    """Open poke sockets per device, in this process; at most ``limit`` at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[tuple[str, str], int] = {}

    @contextmanager
    def hold(self, device: Device) -> Iterator[bool]:
        """Yields whether the device may open one more socket (and counts it if so)."""
        key = (device.tenant_id, device.node_id)
        if self.open.get(key, 0) >= self.limit:
            yield False
            return
        self.open[key] = self.open.get(key, 0) + 1
        try:
            yield True
        finally:
            self.open[key] -= 1
            if not self.open[key]:
                del self.open[key]


class Refusals:
    """Devices a rate limit refused, until the limit's window ends (this process).
    ``clock`` is a monotonic clock in seconds (injected in tests)."""

    MAX_ENTRIES = 100_000
    #: Access tokens of refused devices remembered (least recently used forgotten first).
    MAX_TOKENS = 10_000

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time
    ) -> None:
        self.clock = clock
        self.wall = wall
        self._until: dict[tuple[str, str], float] = {}
        self._tokens: OrderedDict[bytes, tuple[str, str, float]] = OrderedDict()

    def vouch(self, token: bytes, device: Device, expires_s: float) -> None:
        """``token``, whose signature the caller has just checked, is ``device``'s access
        token until ``expires_s`` (wall clock, seconds since the epoch)."""
        self._tokens[token] = (device.tenant_id, device.node_id, expires_s)
        self._tokens.move_to_end(token)
        while len(self._tokens) > self.MAX_TOKENS:
            self._tokens.popitem(last=False)

    def active(self) -> bool:
        """Whether any device is refused (when none is, nothing need be looked up)."""
        return bool(self._until)

    def retry_after_token(self, token: bytes) -> int | None:
        """Seconds the device whose vouched-for ``token`` this is must still wait, or
        ``None`` (not refused, or a token never vouched for, or expired)."""
        if not self._until:
            return None
        known = self._tokens.get(token)
        if known is None:
            return None
        tenant_id, node_id, expires_s = known
        if expires_s <= self.wall():
            del self._tokens[token]
            return None
        self._tokens.move_to_end(token)
        return self.retry_after(tenant_id, node_id)

    def refuse(self, device: Device, reset_s: int) -> None:
        """The limiter refused ``device`` and said its window resets in ``reset_s``
        seconds (a whole number rounded up): remembered for ``reset_s - 1`` seconds."""
        if reset_s <= 1:
            return
        now = self.clock()
        if len(self._until) >= self.MAX_ENTRIES:
            self._until = {k: t for k, t in self._until.items() if t > now}
            if len(self._until) >= self.MAX_ENTRIES:
                return
        self._until[(device.tenant_id, device.node_id)] = now + reset_s - 1

    def retry_after(self, tenant_id: str, node_id: str) -> int | None:
        """Seconds the device must still wait, or ``None`` when it is not refused."""
        until = self._until.get((tenant_id, node_id))
        if until is None:
            return None
        left = until - self.clock()
        if left <= 0:
            del self._until[(tenant_id, node_id)]
            return None
        EARLY_REFUSALS.inc()
        return max(1, math.ceil(left))


def early_refusal(
    app: ASGIApp, refusals: Refusals, public: tuple[str, ...], max_body_bytes: int
) -> ASGIApp:
    """Wraps Litestar's ASGI handler: an HTTP request (outside the ``public`` path
    prefixes) carrying an access token :meth:`Refusals.vouch` knows, of a device still
    refused, is answered 429 ``rate-limited`` with ``Retry-After`` at once; its body (at most
    ``max_body_bytes`` of it) is read and discarded first, so the connection stays usable."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and refusals.active() and not scope["path"].startswith(public):
            token = bearer(scope["headers"])
            wait = None if token is None else refusals.retry_after_token(token)
            if wait is not None:
                seen = 0
                while seen <= max_body_bytes:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body"):
                        break
                    seen += len(message.get("body", b""))
                error = RateLimitedError(f"too many requests: retry in {wait} s", retry_after=wait)
                body = msgspec.json.encode(error.problem())
                headers = [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", str(wait).encode()),
                ]
                await send({"type": "http.response.start", "status": 429, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return wrapped


class PushSlots:
    """Pushes being applied per tenant, in this process; at most ``limit`` at once (0: no
    limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy: dict[str, int] = {}

    @contextmanager
    def hold(self, tenant_id: str) -> Iterator[None]:
        """Holds one of the tenant's slots while the push is applied; raises
        :class:`RateLimitedError` (429, ``Retry-After: 1``) when all are taken."""
        if self.limit and self.busy.get(tenant_id, 0) >= self.limit:
            raise RateLimitedError(
                f"this tenant already has {self.limit} pushes in flight: retry in 1 s",
                retry_after=1,
                limit="pushes-in-flight",
            )
        self.busy[tenant_id] = self.busy.get(tenant_id, 0) + 1
        try:
            yield
        finally:
            self.busy[tenant_id] -= 1
            if not self.busy[tenant_id]:
                del self.busy[tenant_id]
