"""Device authentication: Litestar's JWT security backend, with the algorithm pinned.

An access token is a JWT signed with HS256 (only HS256 is accepted on decode), with the
claims ``sub`` (the node id), ``tid`` (the tenant id), ``ep`` (the device's token epoch),
``iat`` and ``exp``; all five are required. On every request the device is looked up: a
revoked device, or a token of an ended chain (another epoch), gets 401 at once.

The token comes in ``Authorization: Bearer <token>``; a WebSocket may pass it as
``?token=<token>`` instead, since browsers cannot set headers on a WebSocket.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, WebSocketException
from litestar.middleware.authentication import AuthenticationResult
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware, Token

from server.accounts import Accounts, Grant

__all__ = [
    "ALGORITHM",
    "WS_UNAUTHENTICATED",
    "AccessToken",
    "Device",
    "issue_access_token",
    "make_jwt_auth",
]

ALGORITHM = "HS256"
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


class _Middleware(JWTAuthenticationMiddleware):
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
                return await self.authenticate_token(encoded_token=query, connection=connection)
        raise NotAuthorizedException("no access token: send `Authorization: Bearer <token>`")


def make_jwt_auth(
    secret: str, accounts: Callable[[], Accounts], *, access_ttl_s: int, exclude: list[str]
) -> JWTAuth[Device, AccessToken]:
    """The security backend. ``accounts`` gives the live account store (opened in the
    lifespan, after the app is built)."""

    async def retrieve_device(
        token: AccessToken, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> Device | None:
        state = await accounts().device(token.tid, token.sub)
        if state is None or state.revoked or state.epoch != token.ep:
            return None
        return Device(token.tid, token.sub)

    handler: Callable[[AccessToken, ASGIConnection[Any, Any, Any, Any]], Awaitable[Device | None]]
    handler = retrieve_device
    return JWTAuth[Device, AccessToken](
        token_secret=secret,
        retrieve_user_handler=handler,
        algorithm=ALGORITHM,
        default_token_expiration=timedelta(seconds=access_ttl_s),
        require_claims=list(_REQUIRED),
        verify_expiry=True,
        exclude=exclude,
        authentication_middleware_class=_Middleware,
        token_cls=AccessToken,
        description="A device's access token from POST /v1/auth/device or /v1/auth/refresh.",
    )


def issue_access_token(auth: JWTAuth[Device, AccessToken], grant: Grant) -> str:
    return auth.create_token(identifier=grant.node_id, tid=grant.tenant_id, ep=grant.epoch)
