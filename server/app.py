"""``create_app(settings)``: the Litestar app is wiring.

The lifespan opens the database (and applies migrations), starts the effect worker
(:class:`~fynlo_sync.worker.EffectWorker`: durable effects from the outbox), then runs the
plugins' lifespan hooks; plugins' routes are mounted under ``/v1/plugins/<name>``
(:mod:`server.plugins`).
Channels carries pokes, the JWT security backend authenticates devices, exception handlers
turn every error into an RFC 9457 ``application/problem+json`` body, Prometheus serves
``/metrics``, OpenAPI ``/schema``.
Nothing is global: two apps in one process share nothing (but the Prometheus registry).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any, cast

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    ValidationException,
)
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

import conflict
from fynlo_sync.errors import (
    PROBLEM_BASE,
    BatchTooLargeError,
    FynloError,
    MalformedError,
    RateLimitedError,
    StoreBusyError,
    StoreError,
    StoreUnavailableError,
    UnauthenticatedError,
)
from fynlo_sync.hlc import HybridClock
from fynlo_sync.limits import check_depth
from fynlo_sync.plugin_loader import load_plugins
from fynlo_sync.plugins import Registry
from fynlo_sync.worker import EffectWorker
from server.auth import AccessToken, Device, bearer, make_jwt_auth
from server.backends import open_backend
from server.observe import ObservedEffects, configure_logging, outermost
from server.openapi import CompletedJson
from server.plugins import plugin_servers
from server.pokes import SERVER_SEND, make_channels, redis_client
from server.routes import ROUTES, Runtime
from server.serving import internal_guard, listener_guard, security_headers
from server.settings import Settings
from server.throttle import (
    RATE_STORE,
    Refusals,
    SocketQuota,
    early_refusal,
    rate_limits,
    rate_store,
)

__all__ = [
    "PROBLEM_JSON",
    "app_from_env",
    "create_app",
    "problem_response",
    "registry_from",
]

PROBLEM_JSON = "application/problem+json"

_log = logging.getLogger("fynlo.server")

#: Paths that need no access token.
PUBLIC = ["^/health/", "^/metrics", "^/schema", "^/v1/auth/"]


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def problem_response(error: FynloError, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        content=error.problem(),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


#: Seconds a client should wait before retrying, by problem (RFC 9110 ``Retry-After``).
RETRY_AFTER_S: dict[type[FynloError], int] = {StoreBusyError: 1, StoreUnavailableError: 5}


def _fynlo_error(request: Request[Any, Any, Any], exc: FynloError) -> Response[Any]:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    wait = RETRY_AFTER_S.get(type(exc))
    if isinstance(exc, RateLimitedError):
        wait = int(exc.extra.get("retry_after", 1))
    if wait is not None:
        headers = {"Retry-After": str(wait)}
    if isinstance(exc, StoreError):
        # The store failed, not the caller: logged with the driver's error it came from.
        _log.error(
            "store error on %s %s: %s", request.method, request.url.path, exc.code, exc_info=exc
        )
    return problem_response(exc, headers)


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """A bug or an unmapped driver error: logged with its traceback, answered as a bare 500
    problem (no internals in the body)."""
    _log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = {
        "type": PROBLEM_BASE + "internal-error",
        "title": "InternalError",
        "status": 500,
        "detail": "the server failed; the request may be retried",
    }
    return Response(content=body, status_code=500, media_type=PROBLEM_JSON)


def _http_error(
    request: Request[Any, Any, Any], exc: HTTPException, refusals: Refusals | None = None
) -> Response[Any]:
    """Litestar's own errors, as problem details of the same family."""
    if isinstance(exc, NotAuthorizedException):
        return _fynlo_error(request, UnauthenticatedError(exc.detail))
    if isinstance(exc, ValidationException):
        extra = exc.extra if isinstance(exc.extra, list) else []
        return problem_response(MalformedError(exc.detail, errors=extra))
    if exc.status_code == 429:
        # Litestar's RateLimitMiddleware: RateLimit-Reset says when the window ends.
        headers = dict(exc.headers or {})
        retry = max(1, int(headers.get("RateLimit-Reset", "1") or 1))
        headers["Retry-After"] = str(retry)
        user = request.scope.get("user")
        if refusals is not None and isinstance(user, Device):
            refusals.refuse(user, retry)  # its next requests are refused before a lookup
            token, claims = bearer(request.scope["headers"]), request.scope.get("auth")
            if token is not None and isinstance(claims, AccessToken):
                # Its signature was checked on the way in: later ones are refused first thing.
                refusals.vouch(token, user, claims.exp.timestamp())
        return problem_response(
            RateLimitedError(f"too many requests: retry in {retry} s", retry_after=retry),
            headers,
        )
    if exc.status_code == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        return problem_response(
            BatchTooLargeError(
                f"the request body is larger than the {limit} bytes this server accepts",
                max_bytes=limit,
            )
        )
    if exc.status_code >= 500:
        return _unexpected(request, exc)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    if isinstance(exc, NotFoundException):
        slug = "not-found"
    body = {
        "type": PROBLEM_BASE + slug,
        "title": type(exc).__name__,
        "status": exc.status_code,
        "detail": exc.detail,
    }
    return Response(
        content=body, status_code=exc.status_code, media_type=PROBLEM_JSON, headers=exc.headers
    )


#: Routes that check their own body (the push path checks depth before parsing the batch).
_OWN_BODY_CHECK = frozenset({"/v1/sync/push"})


def _depth_guard(max_depth: int) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """A ``before_request`` hook: every JSON body is checked for nesting depth before any
    parser sees it (msgspec, like every recursive parser, fails near 1,000 levels)."""

    async def guard(request: Request[Any, Any, Any]) -> None:
        if request.method in ("POST", "PUT", "PATCH") and request.url.path not in _OWN_BODY_CHECK:
            check_depth(await request.body(), max_depth)

    return guard


def _too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """A backstop: a value too deep for a recursive encoder or decoder is the caller's."""
    _log.warning("refused a too deeply nested value on %s %s", request.method, request.url.path)
    return problem_response(MalformedError("the value is nested too deeply", limit="depth"))


def registry_from(settings: Settings, environ: Mapping[str, str] | None = None) -> Registry:
    """The registry of the plugins that ``settings.plugins`` names (``module:Class``), each
    with its settings read from ``environ`` (default: the process's environment)."""
    return conflict.registry(load_plugins(settings.plugins, environ))


class _App(Litestar):
    """Litestar, keeping the ASGI server's own ``send`` of each WebSocket in its scope
    (:data:`server.pokes.SERVER_SEND`) before wrapping it: the poke hub writes a poke's
    frame straight to the connection behind it (:func:`server.pokes.frame_writer`)."""

    __slots__ = ()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            cast(dict[str, Any], scope)[SERVER_SEND] = send
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    wall: Callable[[], int] | None = None,
    rng: random.Random | None = None,
) -> Litestar:
    """Build the app. ``registry`` holds the domain plugins (default: those ``settings``
    names, see :func:`registry_from`); ``wall`` is
    the clock in ms (default: the system clock); ``rng`` makes the op ids the server mints."""
    clock_fn = wall or _wall_ms
    redis = redis_client(settings)
    channels = make_channels(settings, redis)
    rt = Runtime(
        settings=settings,
        registry=registry or registry_from(settings),
        clock=HybridClock(clock_fn),
        rng=rng or random.Random(),
        channels=channels,
        redis=redis,
    )
    refusals = Refusals()
    auth = make_jwt_auth(
        settings.secret_key,
        lambda: rt.backend.accounts,
        access_ttl_s=settings.access_ttl_s,
        exclude=PUBLIC,
        refused=refusals.retry_after,
        vouch=refusals.vouch,
    )

    def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
        return _http_error(request, exc, refusals)

    rt.auth = auth
    extensions = plugin_servers(rt, clock_fn)
    rt.sockets = SocketQuota(settings.max_sockets_per_device)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        rt.backend_ = await open_backend(settings, rt.registry, clock_fn, rt.notify, rng=rt.rng)
        if rt.publisher is not None:
            rt.publisher.warm()  # a connection ready for the first poke, not waited for
        worker = EffectWorker(
            ObservedEffects(rt.backend_.effect_source),
            concurrency=settings.effect_concurrency,
            poll_ms=settings.effect_poll_ms,
        )
        rt.backend_.effects_due = worker.wake
        rt.effects = worker
        working = asyncio.get_running_loop().create_task(worker.run(), name="fynlo-effects")
        try:
            async with AsyncExitStack() as hooks:
                for extension in extensions:
                    if extension.lifespan is not None:
                        await hooks.enter_async_context(extension.lifespan(extension.context))
                yield
        finally:
            working.cancel()
            with suppress(asyncio.CancelledError):
                await working
            backend, rt.backend_ = rt.backend_, None
            await backend.close()
            if rt.publisher is not None:
                await rt.publisher.aclose()
            if redis is not None:
                await redis.aclose()

    def listener_first(app_config: Any) -> Any:
        """Before the security backend (which puts itself first): a path the listener does
        not serve is 404 there, even one that would need a token."""
        app_config.middleware.insert(0, listener_guard(settings.internal_port))
        return app_config

    prometheus = PrometheusConfig(app_name="fynlo", prefix="fynlo", group_path=True)
    app = _App(
        route_handlers=[
            *ROUTES,
            *(e.router() for e in extensions),
            *(r for e in extensions if (r := e.root_router()) is not None),
            PrometheusController,
        ],
        dependencies={"rt": Provide(lambda: rt, use_cache=True, sync_to_thread=False)},
        plugins=[channels],
        on_app_init=[
            auth.on_app_init,
            *([listener_first] if settings.internal_port else []),
            outermost,
        ],
        before_send=[security_headers],
        middleware=[
            *([internal_guard(settings.internal_token)] if settings.internal_token else []),
            prometheus.middleware,
            *(c.middleware for c in rate_limits(settings)),
        ],
        stores={RATE_STORE: rate_store(settings, redis)},
        lifespan=[lifespan],
        exception_handlers={
            FynloError: _fynlo_error,
            HTTPException: http_error,
            RecursionError: _too_deep,
            Exception: _unexpected,
        },
        openapi_config=OpenAPIConfig(
            title="fynlo-sync server",
            version="1",
            path="/schema",
            use_handler_docstrings=True,
            render_plugins=[CompletedJson()],
        ),
        request_max_body_size=settings.max_body_bytes,
        logging_config=None,  # server.observe configures logging (in app_from_env)
        before_request=_depth_guard(settings.max_depth),
        signature_namespace={"Runtime": Runtime},
    )
    # Before routing and every middleware: a remembered refused token is answered at once.
    app.asgi_handler = early_refusal(
        app.asgi_handler, refusals, tuple(p.lstrip("^") for p in PUBLIC), settings.max_body_bytes
    )
    return app


def app_from_env() -> Litestar:
    """The uvicorn factory: ``uvicorn --factory server.app:app_from_env``. Configures the
    process's logging (JSON lines in production; see :mod:`server.observe`)."""
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings)
