"""The loyalty plugin's server side: its HTTP routes (only the server imports this module).

Mounted under ``/v1/plugins/loyalty`` (``server.plugins``):

* ``GET /cards/{card_id}/link``: a device (access token) asks for the signed link to print
  on a receipt: ``/v1/plugins/loyalty/public/{tenant}/{card_id}?expires=<day>&sig=<hmac>``.
* ``GET /public/{tenant}/{card_id}?expires=&sig=``: public (``exclude_from_auth=True``): the
  route authenticates the request itself, by the link's HMAC (constant-time compare) and
  expiry. It shows the card's stamps, never the customer.
* ``POST /webhooks/stamp``: public too: the online shop stamps a card for an order,
  signing the raw body (``Fynlo-Loyalty-Signature: t=<unix s>,v1=<hmac>``). The server
  authors the ``stamp`` command as node ``server``; the order id is the command's ``visit``,
  so a delivery repeated by the shop stamps once.

A handler decodes, calls the plugin's pure code, encodes.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from msgspec import Struct

from examples.loyalty.plugin import (
    CARDS,
    CardNotFoundError,
    LoyaltySettings,
    link_signature,
    verify_link,
    verify_webhook,
)
from fynlo_sync.errors import MalformedError
from fynlo_sync.ops import Record
from fynlo_sync.plugins import Draft
from server.auth import AccessToken, Device
from server.plugins import PLUGIN_PREFIX, PluginContext

__all__ = ["ROUTES", "CardLink", "CardView", "StampEvent", "StampResult"]

_DAY_MS = 86_400_000


class CardLink(Struct, frozen=True):
    url: str
    expires_day: int


class CardView(Struct, frozen=True):
    card_id: str
    status: str
    stamps: int
    goal: int
    rewards: int


async def _card(plugin: PluginContext, tenant: str, card_id: str) -> Record:
    found = await plugin.backend.load(tenant, [(CARDS, card_id)])
    card = found.get((CARDS, card_id))
    if card is None or card.deleted:
        raise CardNotFoundError(f"no loyalty card {card_id!r}", card_id=card_id)
    return card


@get("/cards/{card_id:str}/link")
async def card_link(
    request: Request[Device, AccessToken, Any],
    plugin: NamedDependency[PluginContext],
    card_id: FromPath[str],
) -> CardLink:
    """The signed customer link of one of the device's tenant's cards."""
    tenant = request.user.tenant_id
    await _card(plugin, tenant, card_id)
    settings: LoyaltySettings = plugin.settings
    expires = plugin.now_ms() // _DAY_MS + settings.link_ttl_days
    sig = link_signature(settings.link_secret, tenant, card_id, expires)
    url = f"{PLUGIN_PREFIX}/loyalty/public/{tenant}/{card_id}?expires={expires}&sig={sig}"
    return CardLink(url=url, expires_day=expires)


@get("/public/{tenant:str}/{card_id:str}", exclude_from_auth=True)
async def public_card(
    plugin: NamedDependency[PluginContext],
    tenant: FromPath[str],
    card_id: FromPath[str],
    expires: Annotated[int, QueryParameter(ge=0)],
    sig: Annotated[str, QueryParameter(max_length=128)],
) -> CardView:
    """A card as its customer sees it. Public: the link's signature authenticates it."""
    settings: LoyaltySettings = plugin.settings
    verify_link(settings.link_secret, tenant, card_id, expires, sig, plugin.now_ms() // _DAY_MS)
    card = (await _card(plugin, tenant, card_id)).fields
    return CardView(card_id, card["status"], card["stamps"], card["goal"], card["rewards"])


class StampEvent(Struct, frozen=True, forbid_unknown_fields=True):
    """The shop's webhook body: stamp ``card_id`` of ``tenant`` ``count`` times for its
    order ``order_id``."""

    tenant: str
    card_id: str
    order_id: str
    count: int = 1


class StampResult(Struct, frozen=True):
    """``applied``, or ``rejected`` with the reason (``duplicate-visit``: already done)."""

    status: str
    reason: str | None
    seq: int


_stamp_event = msgspec.json.Decoder(StampEvent)


@post("/webhooks/stamp", exclude_from_auth=True, status_code=200)
async def stamp_webhook(
    request: Request[Any, Any, Any], plugin: NamedDependency[PluginContext]
) -> StampResult:
    """The shop stamps a card. Public: the signature over the raw body authenticates it."""
    settings: LoyaltySettings = plugin.settings
    body = await request.body()
    header = request.headers.get("fynlo-loyalty-signature", "")
    verify_webhook(settings.webhook_secret, header, body, plugin.now_ms() // 1000)
    try:
        event = _stamp_event.decode(body)
    except msgspec.DecodeError as exc:
        raise MalformedError(f"not a stamp event: {exc}") from None
    await _card(plugin, event.tenant, event.card_id)  # a card of a real tenant, or 404
    draft = Draft.command(
        CARDS, event.card_id, "stamp", {"count": event.count, "visit": event.order_id}
    )
    outcome = (await plugin.author(event.tenant, [draft])).outcomes[0]
    return StampResult(outcome.status, outcome.reason, outcome.seq)


ROUTES = [card_link, public_card, stamp_webhook]
