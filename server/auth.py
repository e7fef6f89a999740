"""Device authentication: Litestar's JWT security backend, with the algorithm pinned.

An access token is a JWT signed with HS256 (only HS256 is accepted on decode), with the
claims ``sub`` (the node id), ``tid`` (the tenant id), ``ep`` (the device's token epoch),
``iat`` and ``exp``; all five are required. On every request the device is looked up: a
revoked device, or a token of an ended chain (another epoch), gets 401 at once.

The token comes in ``Authorization: Bearer <token>``. A WebSocket upgrade (browsers cannot
set its headers) may instead carry ``?ticket=<ticket>``: a one-time ticket the device got
from ``POST /v1/sync/ws-ticket`` (:meth:`~server.accounts.Accounts.use_ticket`), so no
token is put in a URL; a refused ticket is answered with a 401 problem instead of the
upgrade. ``?token=<token>`` still works for terminals that predate tickets (deprecated).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, WebSocketException
from litestar.middleware.authentication import AuthenticationResult
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware, Token
from prometheus_client import Counter

from fynlo_sync.errors import FynloError, RateLimitedError, UnauthenticatedError
from server.accounts import Accounts, Grant

__all__ = [
    "ALGORITHM",
    "WS_QUERY_TOKENS",
    "WS_UNAUTHENTICATED",
    "AccessToken",
    "Device",
    "bearer",
    "issue_access_token",
    "make_jwt_auth",
]

ALGORITHM = "HS256"

#: WebSocket upgrades authenticated by the deprecated ``?token=`` (when this stays at zero,
#: no terminal in the field needs it any more).
WS_QUERY_TOKENS = Counter(
    "fynlo_ws_query_token", "WebSocket upgrades with the access token in ?token= (deprecated)"
)
_REQUIRED = ("exp", "iat", "sub", "tid", "ep")


@dataclass(frozen=True, slots=True)
class Device:
    """The authenticated caller: one node of one tenant."""

    tenant_id: str
    node_id: str


@dataclass
class AccessToken(Token):
    """The JWT claims: Litestar's (``sub``, ``exp``, ``iat``) plus the tenant and epoch."""

    tid: str = field(default="")
    ep: int = field(default=-1)


#: WebSocket close code for a refused token (4000 + HTTP 401). Closed before the handshake
#: completes, so an ASGI server answers the upgrade request with HTTP 403.
WS_UNAUTHENTICATED = 4401


async def _deny(scope: Any, receive: Any, send: Any, error: FynloError) -> None:
    """Refuse a WebSocket upgrade with the problem (401 for a refused ticket; the ASGI
    denial response), or, on an ASGI server without that extension, close it with 4401 (the
    client sees 403)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": WS_UNAUTHENTICATED, "reason": ""})
        return
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    if error.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    start = {"type": "websocket.http.response.start", "status": error.status, "headers": headers}
    await send(start)
    body = msgspec.json.encode(error.problem())
    await send({"type": "websocket.http.response.body", "body": body})


class _Middleware(JWTAuthenticationMiddleware):
    #: The live account store (set on the subclass :func:`make_jwt_auth` makes).
    accounts: Callable[[], Accounts]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == ScopeType.WEBSOCKET and b"ticket=" in scope.get("query_string", b""):
            connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope)
            ticket = connection.query_params.get("ticket")
            if ticket is not None:
                try:
                    result = await self._ticket(connection, ticket)
                except FynloError as exc:  # refused, or the store failed (store-error)
                    await _deny(scope, receive, send, exc)
                    return
                scope["user"], scope["auth"] = result.user, result.auth
                await self.app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _ticket(
        self, connection: ASGIConnection[Any, Any, Any, Any], ticket: str
    ) -> AuthenticationResult:
        """Authenticate an upgrade by its one-time ticket. With an access token in the
        header as well, both must name the same device."""
        holder = await type(self).accounts().use_ticket(ticket)
        device = Device(holder.tenant_id, holder.node_id)
        if connection.headers.get(self.auth_header):
            try:
                other = await self._authenticate(connection)
            except NotAuthorizedException as exc:
                raise UnauthenticatedError(str(exc.detail)) from None
            if other.user != device:
                raise UnauthenticatedError(
                    "the WebSocket ticket is another device's", reason="ticket-device"
                )
        # Stands for the access token the ticket was issued under (its epoch is rechecked
        # while the socket is open).
        exp = datetime.now(UTC) + timedelta(minutes=1)
        token = AccessToken(exp=exp, sub=holder.node_id, tid=holder.tenant_id, ep=holder.epoch)
        return AuthenticationResult(user=device, auth=token)

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        if connection.scope["type"] != ScopeType.WEBSOCKET:
            return await self._authenticate(connection)
        try:
            return await self._authenticate(connection)
        except NotAuthorizedException as exc:
            raise WebSocketException(detail=exc.detail, code=WS_UNAUTHENTICATED) from exc

    async def _authenticate(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        header = connection.headers.get(self.auth_header)
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise NotAuthorizedException("use `Authorization: Bearer <access token>`")
            return await self.authenticate_token(encoded_token=token, connection=connection)
        if connection.scope["type"] == ScopeType.WEBSOCKET:
            query: str | None = connection.query_params.get("token")
            if query:
                result = await self.authenticate_token(encoded_token=query, connection=connection)
                WS_QUERY_TOKENS.inc()
                return result
        raise NotAuthorizedException("no access token: send `Authorization: Bearer <token>`")


def bearer(headers: Any) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header, as sent (ASGI's raw
    headers)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = bytes(value).partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


def make_jwt_auth(
    secret: str,
    accounts: Callable[[], Accounts],
    *,
    access_ttl_s: int,
    exclude: list[str],
    refused: Callable[[str, str], int | None] | None = None,
    vouch: Callable[[bytes, Device, float], None] | None = None,
) -> JWTAuth[Device, AccessToken]:
    """The security backend. ``accounts`` gives the live account store (opened in the
    lifespan, after the app is built). ``refused(tenant, node)``: the seconds a device a
    rate limit refused must still wait (or ``None``); such a device's HTTP requests are
    refused (429) once its token's signature checks out, before it is looked up, and the
    token (signature checked) is given to ``vouch(token, device, expires_s)``."""

    async def retrieve_device(
        token: AccessToken, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> Device | None:
        if refused is not None and connection.scope["type"] == ScopeType.HTTP:
            wait = refused(token.tid, token.sub)
            if wait is not None:
                raw = bearer(connection.scope["headers"])
                if vouch is not None and raw is not None:
                    vouch(raw, Device(token.tid, token.sub), token.exp.timestamp())
                raise RateLimitedError(f"too many requests: retry in {wait} s", retry_after=wait)
        state = await accounts().device(token.tid, token.sub)
        if state is None or state.revoked or state.epoch != token.ep:
            return None
        return Device(token.tid, token.sub)

    handler: Callable[[AccessToken, ASGIConnection[Any, Any, Any, Any]], Awaitable[Device | None]]
    handler = retrieve_device
    middleware = type("DeviceAuthMiddleware", (_Middleware,), {"accounts": staticmethod(accounts)})
    return JWTAuth[Device, AccessToken](
        token_secret=secret,
        retrieve_user_handler=handler,
        algorithm=ALGORITHM,
        default_token_expiration=timedelta(seconds=access_ttl_s),
        require_claims=list(_REQUIRED),
        verify_expiry=True,
        exclude=exclude,
        authentication_middleware_class=middleware,
        token_cls=AccessToken,
        description="A device's access token from POST /v1/auth/device or /v1/auth/refresh.",
    )


def issue_access_token(auth: JWTAuth[Device, AccessToken], grant: Grant) -> str:
    return auth.create_token(identifier=grant.node_id, tid=grant.tenant_id, ep=grant.epoch)
