"""What the server tells its operator: structured logs (structlog) and Prometheus metrics.

Logs
    One line per HTTP request (``event="request"``: method, path without the query string,
    status, duration, tenant and node when authenticated, client version) and one per
    WebSocket session (``event="socket"``), and one per push (``event="push"``: tenant, node,
    ops, the count of each outcome, cursor, duration; or the problem that refused it). JSON
    lines in production, readable colums in dev (``FYNLO_LOG_FORMAT=json|console``,
    ``FYNLO_LOG_LEVEL``). The standard library's loggers (uvicorn, litestar, ours) go
    through the same renderer. Nothing that could hold a secret is logged: no headers, no
    query strings, no bodies; and :func:`redact` masks any field whose name says token,
    code, secret, password, pin or authorization, as a second line of defence.

Metrics (``/metrics``; with several worker processes, prometheus_client's multiprocess
mode: ``fynlo serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder)
    ``fynlo_ops_total{outcome}``, ``fynlo_pushes_total{result}``, ``fynlo_push_seconds``,
    ``fynlo_push_ops``, ``fynlo_pull_seconds``, ``fynlo_pull_page_changes``,
    ``fynlo_pull_page_bytes``,
    ``fynlo_sockets_open``, ``fynlo_pokes_sent_total``,
    ``fynlo_effects_total{event=queued|performed|failed|dead}``, beside Litestar's per-route
    ``fynlo_requests_total`` and ``fynlo_request_duration_seconds``.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

from fynlo_sync.errors import FynloError
from fynlo_sync.protocol import PushResult, WirePage

__all__ = [
    "EFFECTS",
    "OPS",
    "POKES_COALESCED",
    "POKES_RECEIVED",
    "POKES_SENT",
    "PULL_BYTES",
    "PULL_CHANGES",
    "PULL_SECONDS",
    "PUSHES",
    "PUSH_OPS",
    "PUSH_SECONDS",
    "SOCKETS_OPEN",
    "ObservedEffects",
    "configure_logging",
    "effects_queued",
    "log",
    "pulled",
    "push_failed",
    "pushed",
    "redact",
    "outermost",
    "request_log",
]

log = structlog.get_logger("fynlo.server")

OPS = Counter("fynlo_ops_total", "Pushed ops by outcome", ["outcome"])
PUSHES = Counter("fynlo_pushes_total", "Pushes by result (ok or the problem code)", ["result"])
PUSH_SECONDS = Histogram(
    "fynlo_push_seconds",
    "Push latency (decode, plan, commit)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PUSH_OPS = Histogram(
    "fynlo_push_ops", "Ops per pushed batch", buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
)
PULL_SECONDS = Histogram(
    "fynlo_pull_seconds",
    "Pull latency",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
PULL_CHANGES = Histogram(
    "fynlo_pull_page_changes",
    "Changes per pulled page (feed pages; compacted ones are counted in bytes only)",
    buckets=(0, 1, 5, 10, 25, 50, 100, 250, 500, 1000),
)
PULL_BYTES = Histogram(
    "fynlo_pull_page_bytes",
    "Bytes of changes per pulled page",
    buckets=(256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304),
)
SOCKETS_OPEN = Gauge("fynlo_sockets_open", "Poke WebSockets open", multiprocess_mode="livesum")
POKES_SENT = Counter("fynlo_pokes_sent_total", "Pokes sent on WebSockets")
POKES_RECEIVED = Counter(
    "fynlo_pokes_received_total",
    "Pokes this process received from other processes (Redis or LISTEN/NOTIFY), each decoded "
    "once for all its sockets",
)
POKES_COALESCED = Counter(
    "fynlo_pokes_coalesced_total",
    "Pokes never sent to a socket because a newer one came while it could not be written",
)
EFFECTS = Counter(
    "fynlo_effects_total",
    "Durable effects by event: queued (written with a commit), performed, failed (an attempt "
    "that will be retried), dead (out of attempts, or refused for good)",
    ["event"],
)


class ObservedEffects:
    """The effect worker's source, counting how each settled attempt ended."""

    def __init__(self, source: Any) -> None:
        self._source = source

    async def claim_effects(self, limit: int) -> Any:
        return await self._source.claim_effects(limit)

    async def attempt(self, row: Any, read: Any) -> Any:
        return await self._source.attempt(row, read)

    async def read(self, tenant: str, collection: str, record_id: str) -> Any:
        return await self._source.read(tenant, collection, record_id)

    async def finish_effect(self, row: Any, settlement: Any, drafts: Any = ()) -> bool:
        settled: bool = await self._source.finish_effect(row, settlement, drafts)
        if settled:
            state = settlement.state
            EFFECTS.labels(
                "performed" if state == "done" else "dead" if state == "dead" else "failed"
            ).inc()
        return settled


def effects_queued(count: int) -> None:
    if count:
        EFFECTS.labels("queued").inc(count)


_SECRET_WORDS = ("token", "code", "secret", "password", "pin", "authorization", "key")


def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A structlog processor: mask the value of any field whose name names a secret."""
    for name in list(event):
        lowered = name.lower()
        if name != "event" and any(word in lowered for word in _SECRET_WORDS):
            event[name] = "[redacted]"
    return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    redact,
]

# structlog hands every event to the standard library's logging, so a process that does not
# call configure_logging (a test, the in-process demo) shows only warnings, as before.
structlog.configure(
    processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


#: A request line's query string (uvicorn logs ``"WebSocket /v1/sync/ws?token=..."``), and
#: any ``token=``/``ticket=``/``code=``/``secret=`` pair in a message.
_QUERY = re.compile(r"((?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|WebSocket) [^\s?\"]*)\?[^\s\"]*")
_PAIR = re.compile(r"((?:token|ticket|code|secret|password|pin)[a-z_]*=)[^&\s\"]+", re.IGNORECASE)


class _Scrub(logging.Filter):
    """Masks query strings and secret-named pairs in the standard library's messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = _PAIR.sub(r"\1[redacted]", _QUERY.sub(r"\1?[redacted]", message))
        if clean != message:
            record.msg, record.args = clean, None
        return True


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    """Send every log line (structlog's and the standard library's: uvicorn, litestar) to
    stderr, as JSON lines (``fmt="json"``) or readable lines (``"console"``)."""
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else _keep,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_Scrub())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the request line replaces it


def _keep(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    return event


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)


def pushed(tenant: str, node: str, result: PushResult, start: float) -> None:
    tally = Tally(o.status for o in result.outcomes)
    elapsed = time.perf_counter() - start
    for status in sorted(tally):
        OPS.labels(status).inc(tally[status])
    PUSHES.labels("ok").inc()
    PUSH_SECONDS.observe(elapsed)
    PUSH_OPS.observe(len(result.outcomes))
    log.info(
        "push",
        tenant=tenant,
        node=node,
        ops=len(result.outcomes),
        outcomes=dict(sorted(tally.items())),
        cursor=result.cursor,
        high_water=result.high_water,
        duration_ms=round(elapsed * 1000, 3),
    )


def push_failed(tenant: str, node: str, error: FynloError, start: float) -> None:
    elapsed = time.perf_counter() - start
    PUSHES.labels(error.code).inc()
    PUSH_SECONDS.observe(elapsed)
    log.info(
        "push",
        tenant=tenant,
        node=node,
        ops=0,
        outcomes={},
        problem=error.code,
        status=error.status,
        duration_ms=round(elapsed * 1000, 3),
    )


def pulled(page: WirePage, start: float) -> None:
    PULL_SECONDS.observe(time.perf_counter() - start)
    PULL_BYTES.observe(len(page.changes))
    if not page.compacted:  # feed seqs are consecutive per tenant
        PULL_CHANGES.observe(page.cursor - page.since)


ASGIApp = Callable[..., Awaitable[None]]


def _status_of(error: BaseException | None) -> int:
    """The status an error leaving the middleware becomes (Litestar's exception handlers,
    outside it, answer it): 0 when nothing was answered and nothing raised."""
    if error is None:
        return 0
    status = getattr(error, "status_code", None) or getattr(error, "status", None)
    return int(status) if isinstance(status, int) else 500


def request_log(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: one log line per HTTP request and per WebSocket session. (Litestar's
    logging middleware writes a request line and a response line; one line with the
    duration, the status and the device is what an operator greps.) Install it outermost
    (:func:`outermost`), so a request the authentication middleware refuses is logged too."""

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket") or scope.get("fynlo.logged"):
            await app(scope, receive, send)
            return
        scope["fynlo.logged"] = True
        start = time.perf_counter()
        status: dict[str, int] = {}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            elif message["type"] == "websocket.accept":
                status["code"] = 101
            elif message["type"] == "websocket.close":
                status["close"] = int(message.get("code", 1000))
            await send(message)

        error: BaseException | None = None
        try:
            await app(scope, receive, watch)
        except BaseException as exc:
            error = exc
            raise
        finally:
            user = scope.get("user")
            agent = ""
            for name, value in scope.get("headers", ()):
                if name == b"user-agent":
                    agent = value.decode("latin-1")[:120]
            log.info(
                "request" if kind == "http" else "socket",
                method=scope.get("method", "WS"),
                path=str(scope.get("path", ""))[:200],
                status=status.get("code", _status_of(error)),
                duration_ms=_ms(start),
                tenant=getattr(user, "tenant_id", None),
                node=getattr(user, "node_id", None),
                client=agent or None,
                **({"close_code": status["close"]} if "close" in status else {}),
            )

    return middleware


def outermost(app_config: Any) -> Any:
    """An ``on_app_init`` hook (after the security backend's, which puts itself first):
    :func:`request_log` becomes the outermost middleware."""
    app_config.middleware.insert(0, request_log)
    return app_config
