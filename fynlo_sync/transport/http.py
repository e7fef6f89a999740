"""The HTTP transport (httpx, synchronous) and a WebSocket poke listener (websockets).

:class:`HttpTransport` implements :class:`~fynlo_sync.transport.base.Transport` against the
server's ``/v1`` API. It holds the device's tokens: on a 401 it rotates the refresh token
once and retries; the new tokens go to ``on_tokens`` so the terminal can keep them.
Problem-details bodies come back as the same typed errors the server raised (by their
``type``); network failures and 5xx answers raise :class:`~fynlo_sync.errors.TransportError`
(retry: every push is idempotent).

:class:`PokeListener` keeps a WebSocket open on ``/v1/sync/ws`` on a background thread,
reconnecting with backoff, and reports each poke's cursor (``on_poke`` and :meth:`next`).
Each connection is authenticated by a one-time ticket (``POST /v1/sync/ws-ticket``, then
``?ticket=``), so the access token is never put in a URL or sent on the upgrade.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from fynlo_sync import __version__
from fynlo_sync.client import Backoff
from fynlo_sync.errors import (
    PROBLEM_BASE,
    FynloError,
    MissingDependencyError,
    PeerError,
    ServerError,
    TransportError,
    UnauthenticatedError,
)
from fynlo_sync.ops import Batch
from fynlo_sync.protocol import (
    PageRows,
    Poke,
    PullPage,
    PushResult,
    decode,
    decode_page,
    decode_page_rows,
    encode_batch,
)

try:
    import httpx
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
    raise MissingDependencyError("httpx", "client") from exc

__all__ = ["USER_AGENT", "HttpTransport", "PokeListener", "Tokens", "error_from_problem"]

#: Sent on every request and WebSocket handshake, so the server's logs name the client.
USER_AGENT = f"fynlo-sync/{__version__} (python)"

_log = logging.getLogger("fynlo.transport")

_STANDARD = ("type", "title", "status", "detail", "instance")


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    node_id: str
    tenant_id: str
    expires_in: int


class _TokenBody(msgspec.Struct):
    access_token: str
    refresh_token: str
    node_id: str
    tenant_id: str
    expires_in: int
    token_type: str = "Bearer"


def _error_classes() -> dict[str, type[FynloError]]:
    found: dict[str, type[FynloError]] = {}
    stack: list[type[FynloError]] = [FynloError]
    while stack:
        cls = stack.pop()
        found.setdefault(cls.code, cls)
        stack.extend(cls.__subclasses__())
    return found


class _RemoteError(PeerError):
    """A problem whose type this client does not know; ``code``/``status`` are the server's."""

    def __init__(self, detail: str, code: str, status: int, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.code = code  # type: ignore[misc]
        self.status = status  # type: ignore[misc]


def _retry_after(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def error_from_problem(status: int, body: bytes, retry_after: str | None = None) -> FynloError:
    """The typed error for a problem-details response: the server's own class for a 4xx of
    a type this client knows, :class:`~fynlo_sync.errors.ServerError` (a TransportError:
    retry) for a 5xx, with the problem's code (``store-busy``, ``store-full``, ...) and
    ``Retry-After``."""
    try:
        problem = msgspec.json.decode(body)
    except msgspec.DecodeError:
        problem = None
    wait = _retry_after(retry_after)
    if not isinstance(problem, dict):
        if status >= 500:
            return ServerError(f"the server answered {status}", "http-error", status, wait)
        return _RemoteError(f"the server answered {status}", "http-error", status)
    type_uri = str(problem.get("type", ""))
    code = type_uri.removeprefix(PROBLEM_BASE) if type_uri.startswith(PROBLEM_BASE) else ""
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    extra = {k: v for k, v in problem.items() if k not in _STANDARD}
    cls = _error_classes().get(code)
    if status >= 500 and (cls is None or not issubclass(cls, PeerError)):
        return ServerError(detail, code or "http-error", status, wait, **extra)
    if cls is None or cls.status != status:
        return _RemoteError(detail, code or "http-error", status, **extra)
    error = cls.__new__(cls)
    FynloError.__init__(error, detail, **extra)
    return error


class HttpTransport:
    """A terminal's link to a fynlo server over HTTP."""

    #: :meth:`push` may be called from a thread other than the caller's (one request at a
    #: time): the terminal then prepares its next batch while one is on the wire.
    pipelined = True

    def __init__(
        self,
        base_url: str,
        tokens: Tokens | None = None,
        *,
        timeout: float = 10.0,
        on_tokens: Callable[[Tokens], None] | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.on_tokens = on_tokens
        self._client = client or httpx.Client(
            base_url=self.base_url, timeout=timeout, headers={"User-Agent": USER_AGENT}
        )
        if self._client.headers.get("User-Agent", "").startswith("python-httpx/"):
            self._client.headers["User-Agent"] = USER_AGENT  # a caller's client, untouched
        self._lock = threading.Lock()

    @classmethod
    def enroll(cls, base_url: str, enrollment_code: str, **kwargs: Any) -> HttpTransport:
        """Redeem a one-use enrollment code and return a transport holding the tokens."""
        link = cls(base_url, **kwargs)
        link._grant("/v1/auth/device", {"enrollment_code": enrollment_code})
        return link

    @property
    def node_id(self) -> str:
        if self.tokens is None:
            raise UnauthenticatedError("this transport has no tokens: enroll first")
        return self.tokens.node_id

    def _send(
        self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One request. An idempotent one (push, pull) is sent once more at once when a
        kept-alive connection turns out to have been closed by the server meanwhile."""
        for attempt in (0, 1):
            try:
                return self._client.request(method, path, **kwargs)
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                if idempotent and attempt == 0:
                    continue
                raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
            except httpx.TransportError as exc:
                raise TransportError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def _grant(self, path: str, body: dict[str, str]) -> Tokens:
        response = self._send("POST", path, json=body)
        if response.status_code != 200:
            raise error_from_problem(
                response.status_code, response.content, response.headers.get("Retry-After")
            )
        got = decode(response.content, _TokenBody)
        tokens = Tokens(
            got.access_token, got.refresh_token, got.node_id, got.tenant_id, got.expires_in
        )
        self.tokens = tokens
        if self.on_tokens is not None:
            self.on_tokens(tokens)
        return tokens

    def refresh(self) -> Tokens:
        """Rotate the refresh token (the old one stops working)."""
        with self._lock:
            if self.tokens is None:
                raise UnauthenticatedError("this transport has no tokens: enroll first")
            return self._grant("/v1/auth/refresh", {"refresh_token": self.tokens.refresh_token})

    def _authed(self, method: str, path: str, *, idempotent: bool = False, **kwargs: Any) -> bytes:
        for attempt in (0, 1):
            if self.tokens is None:
                raise UnauthenticatedError("this transport has no tokens: enroll first")
            used = self.tokens
            headers = {"Authorization": f"Bearer {used.access_token}"}
            if "content" in kwargs:
                headers["Content-Type"] = "application/json"
            response = self._send(method, path, idempotent=idempotent, headers=headers, **kwargs)
            if response.status_code == 401 and attempt == 0:
                with self._lock:
                    if self.tokens is used:  # nobody refreshed meanwhile
                        self._grant("/v1/auth/refresh", {"refresh_token": used.refresh_token})
                continue
            if response.status_code != 200:
                raise error_from_problem(
                    response.status_code, response.content, response.headers.get("Retry-After")
                )
            return response.content
        raise AssertionError("unreachable")

    def push(self, batch: Batch) -> PushResult:
        body = self._authed("POST", "/v1/sync/push", idempotent=True, content=encode_batch(batch))
        return decode(body, PushResult)

    def _page(self, since: int, limit: int, compact: bool) -> bytes:
        params = {"cursor": since, "limit": limit}
        if compact:
            params["compact"] = 1
        return self._authed("GET", "/v1/sync/pull", idempotent=True, params=params)

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        return decode_page(self._page(since, limit, compact))  # verified as received

    def pull_rows(self, since: int, limit: int, *, compact: bool, node_id: str) -> PageRows:
        """:meth:`pull` as the terminal applies it (records as the bytes received)."""
        return decode_page_rows(self._page(since, limit, compact), node_id)

    def get(self, path: str, **params: Any) -> Any:
        """An authenticated GET of any /v1 path, decoded as JSON (e.g. ``/v1/conflicts``)."""
        return msgspec.json.decode(self._authed("GET", path, params=params))

    def post(self, path: str, body: Any) -> Any:
        """An authenticated POST of JSON to any /v1 path, decoded as JSON."""
        return msgspec.json.decode(self._authed("POST", path, content=msgspec.json.encode(body)))

    def ws_ticket(self) -> str:
        """A one-time ticket for one WebSocket upgrade (``?ticket=``; expires in seconds)."""
        body = msgspec.json.decode(self._authed("POST", "/v1/sync/ws-ticket", content=b"{}"))
        ticket: str = body["ticket"]
        return ticket

    def ws_url(self) -> str:
        scheme = "wss" if self.base_url.startswith("https:") else "ws"
        return scheme + self.base_url[self.base_url.index(":") :] + "/v1/sync/ws"

    def close(self) -> None:
        self._client.close()


class PokeListener:
    """Holds a WebSocket to ``/v1/sync/ws`` open on a daemon thread, reconnecting with
    backoff, each time with a new one-time ticket (getting one refreshes the tokens when
    the access token has expired). Each poke's cursor goes to
    ``on_poke`` (on the listener's thread) and to a queue read by :meth:`next`."""

    def __init__(
        self,
        transport: HttpTransport,
        on_poke: Callable[[int], None] | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        try:
            from websockets.sync.client import connect
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the install
            raise MissingDependencyError("websockets", "client") from exc
        self._connect = connect
        self.transport = transport
        self.on_poke = on_poke
        self.backoff = Backoff(rng or random.Random(), base_ms=100, cap_ms=5_000)
        self.connected = threading.Event()
        self._pokes: queue.Queue[int] = queue.Queue()
        self._stop = threading.Event()
        self._ws: Any = None
        self._thread = threading.Thread(target=self._run, name="fynlo-pokes", daemon=True)

    def start(self) -> PokeListener:
        self._thread.start()
        return self

    def __enter__(self) -> PokeListener:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def next(self, timeout: float) -> int | None:
        """The next poke's cursor, or ``None`` after ``timeout`` seconds."""
        try:
            return self._pokes.get(timeout=timeout)
        except queue.Empty:
            return None

    def _run(self) -> None:
        from websockets.exceptions import InvalidStatus, WebSocketException

        while not self._stop.is_set():
            try:
                ticket = self.transport.ws_ticket()
                with self._connect(
                    f"{self.transport.ws_url()}?ticket={ticket}",
                    proxy=None,
                    open_timeout=5,
                    user_agent_header=USER_AGENT,
                ) as ws:
                    self._ws = ws
                    self.connected.set()
                    self.backoff.reset()
                    for message in ws:
                        poke = msgspec.json.decode(message, type=Poke)
                        self._pokes.put(poke.cursor)
                        if self.on_poke is not None:
                            try:
                                self.on_poke(poke.cursor)
                            except Exception:  # the caller's bug must not end the listener
                                _log.exception("on_poke failed for cursor %d", poke.cursor)
            except InvalidStatus:
                pass  # the ticket was refused (expired on the way): the next one is new
            except (OSError, WebSocketException, FynloError, msgspec.DecodeError):
                pass
            finally:
                self._ws = None
                self.connected.clear()
            if not self._stop.is_set():
                self._stop.wait(self.backoff.next_delay_ms() / 1000)

    def stop(self) -> None:
        self._stop.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
