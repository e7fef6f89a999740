"""How the server process is run under uvicorn: timeouts, a connection cap, no tokens in
the access log. ``fynlo serve`` and :func:`server.testing.run_in_thread` both use
:func:`uvicorn_options`.

* **Request timeout** (``FYNLO_REQUEST_TIMEOUT``, 20 s): a client must finish sending a
  request's headers and body within it, from connecting (or from the end of its previous
  response); otherwise the connection is closed. uvicorn has a keep-alive timeout but none
  for a request that never completes, so a few hundred idle sockets used to starve a
  server (slowloris). The WebSocket, once upgraded, is not affected.
* **Connection cap** (``FYNLO_MAX_CONNECTIONS``, 1000 per process): uvicorn's
  ``limit_concurrency``; past it new requests get 503 at once.
* Tokens in the access log are scrubbed by :mod:`server.observe` (its logging setup).
* **Internal port** (``FYNLO_INTERNAL_PORT``): a second listener of the same process that
  serves ``/metrics`` and ``/schema`` (and the health probes) and nothing else, while the
  public port answers 404 to them (:func:`listener_guard`, which tells the two apart by the
  local port a request arrived on; :func:`listeners` binds both).

Behind a reverse proxy, the proxy's own timeouts (nginx ``client_header_timeout``,
``client_body_timeout``) apply first; see ``docs/security.md``.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import socket
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.settings import Settings

#: ASGI callables, loosely typed (these wrappers only look at the ``type`` and ``headers``).
ASGIApp = Callable[[Any, Any, Any], Any]

__all__ = [
    "SECURITY_HEADERS",
    "GuardedH11Protocol",
    "bind_public",
    "internal_guard",
    "listener_guard",
    "listeners",
    "security_headers",
    "uvicorn_options",
]

#: On every response: no sniffing, no framing, no referrer, no active content (the API
#: serves JSON only; the schema pages are JSON and YAML), HTTPS for a year once seen.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"strict-transport-security", b"max-age=31536000"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


async def security_headers(message: Any, scope: Any) -> None:
    """A Litestar ``before_send`` hook: adds :data:`SECURITY_HEADERS` to every HTTP
    response the app sends (404s and problems from the auth layer included)."""
    if message["type"] == "http.response.start":
        headers = message.setdefault("headers", [])
        present = {bytes(name).lower() for name, _ in headers}
        headers.extend((n, v) for n, v in SECURITY_HEADERS if n not in present)


_INTERNAL = (b"/metrics", b"/schema")
_NOT_FOUND = (
    b'{"type":"https://fynlo.dev/problems/not-found","title":"NotFound",'
    b'"status":404,"detail":"not found"}'
)


async def _not_found(send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"application/problem+json"),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": _NOT_FOUND})


def listener_guard(internal_port: int) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware for a server with an internal port: a request that arrived on
    ``internal_port`` may reach only ``/metrics``, ``/schema`` and ``/health/``; one that
    arrived on any other port never reaches ``/metrics`` or ``/schema``. Either way the
    refusal is a 404 problem, as if the path did not exist (a WebSocket is closed)."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] in ("http", "websocket"):
                server = scope.get("server") or (None, None)
                path = scope["path"].encode()
                internal = path.startswith(_INTERNAL)
                if server[1] == internal_port:
                    allowed = internal or path.startswith(b"/health/")
                else:
                    allowed = not internal
                if not allowed:
                    if scope["type"] == "websocket":
                        await receive()
                        await send({"type": "websocket.close", "code": 1008, "reason": ""})
                    else:
                        await _not_found(send)
                    return
            await app(scope, receive, send)

        return wrapped

    return middleware


def bind_public(host: str, port: int) -> socket.socket:
    """The public listening socket, made with ``IPPROTO_TCP``: asyncio sets TCP_NODELAY only
    on sockets whose protocol says TCP, and the sockets accepted from uvicorn's own
    ``Config.bind_socket`` (protocol 0) kept Nagle's algorithm on, so a poke written while the
    previous one was unacknowledged, or a response's body after its head, waited for the
    peer's delayed ACK (~40 ms)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def listeners(settings: Settings, public: socket.socket) -> list[socket.socket]:
    """The sockets to serve: ``public``, and the internal port's when one is set (bound
    here, to ``FYNLO_INTERNAL_HOST``)."""
    if not settings.internal_port:
        return [public]
    internal = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    internal.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    internal.bind((settings.internal_host, settings.internal_port))
    internal.listen(128)
    internal.set_inheritable(True)
    return [public, internal]


def internal_guard(token: str) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware: ``/metrics`` and ``/schema`` need ``Authorization: Bearer <token>``
    (``FYNLO_INTERNAL_TOKEN``); without it they answer 404, as if absent."""
    expected = b"bearer " + token.encode()

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].encode().startswith(_INTERNAL):
                given = dict(scope.get("headers", [])).get(b"authorization", b"")
                if not hmac.compare_digest(given.lower()[:7] + given[7:], expected):
                    await _not_found(send)
                    return
            await app(scope, receive, send)

        return wrapped

    return middleware


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for receiving each request."""

    request_timeout: float = float(os.environ.get("FYNLO_REQUEST_TIMEOUT") or 20)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._fresh = True  # no request yet: silence counts too
        self._arm()

    def data_received(self, data: bytes) -> None:
        self._fresh = True  # bytes of a request arrived: it must now complete in time
        super().data_received(data)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._fresh = False  # an idle keep-alive connection is the keep-alive timeout's
        self._arm()

    def _arm(self) -> None:
        """(Re)start the deadline: from connecting, or from the end of the last response."""
        previous: asyncio.TimerHandle | None = getattr(self, "_timer", None)
        if previous is not None:
            previous.cancel()
        self._timer = self.loop.call_later(self.request_timeout, self._deadline)

    def _deadline(self) -> None:
        transport = self.transport
        if transport.is_closing() or transport.get_protocol() is not self:
            return  # closed, or upgraded to a WebSocket
        state = self.conn.their_state
        # Still receiving this request (partial headers count as IDLE in h11).
        if state is h11.SEND_BODY or (state is h11.IDLE and self._fresh):
            self.logger.info("closing a connection that did not finish its request in time")
            transport.close()


def _protocol(timeout: float) -> type[GuardedH11Protocol]:
    """A protocol class with this timeout (uvicorn instantiates the class it is given)."""
    return type("GuardedH11", (GuardedH11Protocol,), {"request_timeout": timeout})


def uvicorn_options(settings: Settings, *, workers: int = 1) -> dict[str, Any]:
    """The keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that harden it. With
    several workers the protocol class must be importable by name (uvicorn pickles the
    config): :class:`GuardedH11Protocol` then reads ``FYNLO_REQUEST_TIMEOUT`` itself."""
    protocol = _protocol(float(settings.request_timeout_s)) if workers == 1 else GuardedH11Protocol
    return {
        "http": protocol,
        # Poke sockets: websockets' sans-I/O protocol, whose send completes at once while
        # the socket can take data (the hub writes a poke to every socket in one pass), and
        # no per-message-deflate: a poke is ~30 bytes, and a zlib context per socket costs
        # memory and CPU for every one written.
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        "limit_concurrency": settings.max_connections,
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 16 * 1024,  # request line + headers
        "server_header": False,
    }
