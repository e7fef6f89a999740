"""A loyalty stamp card: the pure part of the example plugin.

A card (collection ``loyalty_cards``, one record per card) collects stamps; every ``goal``
stamps earn a reward, which a later visit redeems. Terminals stamp cards offline: ``stamp``
is a command, so two tills stamping one card both count (commands run against the server's
state when they arrive). The whole card life is one state table (``TABLE``).

The plugin's settings (``FYNLO_LOYALTY_*``, :class:`LoyaltySettings`) hold the secret that
signs the links printed on receipts, so a customer can look at their card without an
account (``examples.loyalty.server``). Its invariant (:data:`CARD_BALANCE`) is what
``fynlo check`` and the simulator hold every card to.

Pure: no I/O, no clock, no framework (``hmac`` and ``hashlib`` compute).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any

import msgspec

from fynlo_sync.effects import Effect, EffectHandler
from fynlo_sync.errors import CallerError, PeerError, RejectedOpError
from fynlo_sync.ops import Change
from fynlo_sync.plugins import (
    Collection,
    CommandContext,
    DomainPlugin,
    Field,
    Invariant,
    RecordsByCollection,
    StateTable,
)

__all__ = [
    "CARDS",
    "CARDS_COLLECTION",
    "CARD_BALANCE",
    "MAX_GOAL",
    "TABLE",
    "BadSignatureError",
    "CardNotFoundError",
    "LoyaltyPlugin",
    "LoyaltySettings",
    "link_signature",
    "verify_link",
    "verify_webhook",
    "webhook_signature",
]

CARDS = "loyalty_cards"
#: The most stamps a card may need for one reward.
MAX_GOAL = 50
#: How many external visit ids a card remembers, to stamp each visit once.
RECENT_VISITS = 32
#: How far a webhook's timestamp may be from the server's clock, in seconds.
WEBHOOK_TOLERANCE_S = 300

TABLE = StateTable(
    field="status",
    states=("active", "closed"),
    transitions={
        (None, "issue"): "active",
        ("active", "stamp"): "active",
        ("active", "redeem"): "active",
        ("active", "close"): "closed",
    },
    commands=("issue", "stamp", "redeem", "close"),
    final=frozenset({"closed"}),
)


class LoyaltySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``FYNLO_LOYALTY_LINK_SECRET`` (required, 32+ characters) signs customer links;
    ``FYNLO_LOYALTY_LINK_TTL_DAYS`` is how long a printed link stays valid (365);
    ``FYNLO_LOYALTY_WEBHOOK_SECRET`` (required, 32+ characters) is shared with the online
    shop that stamps cards through the webhook; ``FYNLO_LOYALTY_NOTIFY_URL`` receives a
    notice for every reward earned (the ``reward_notice`` effect)."""

    link_secret: Annotated[str, msgspec.Meta(min_length=32)]
    webhook_secret: Annotated[str, msgspec.Meta(min_length=32)]
    link_ttl_days: Annotated[int, msgspec.Meta(ge=1, le=3650)] = 365
    #: Where reward notices are POSTed (``FYNLO_LOYALTY_NOTIFY_URL``); unset: none are sent.
    notify_url: str | None = None


class CardNotFoundError(CallerError):
    code = "card-not-found"
    status = 404


class BadSignatureError(PeerError):
    """A customer link whose signature is wrong, or which has expired."""

    code = "bad-signature"
    status = 403


def _int_arg(ctx: CommandContext, name: str, low: int, high: int) -> int:
    value = ctx.args.get(name)
    if type(value) is not int or not low <= value <= high:
        raise RejectedOpError(
            f"argument {name!r} must be an integer from {low} to {high}",
            reason="invalid-argument",
            argument=name,
        )
    return value


def _issue(ctx: CommandContext) -> dict[str, Any]:
    status = TABLE.advance(ctx.record, "issue", "a card")
    customer = ctx.args.get("customer")
    if type(customer) is not str or not customer:
        raise RejectedOpError(
            "argument 'customer' must be a non-empty string", reason="invalid-argument"
        )
    goal = _int_arg(ctx, "goal", 1, MAX_GOAL)
    return {
        "status": status,
        "customer": customer,
        "goal": goal,
        "stamps": 0,
        "rewards": 0,
        "earned": 0,
    }


def _stamp(ctx: CommandContext) -> dict[str, Any]:
    """``count`` stamps (1 to the card's goal); every ``goal`` stamps become a reward.
    ``visit`` (optional) names an outside visit (the online shop's order id): a visit the
    card remembers is refused ``duplicate-visit``, so a webhook delivered twice stamps once
    (the command runs under the tenant's lock, against the server's state)."""
    status = TABLE.advance(ctx.record, "stamp", "a card")
    assert ctx.record is not None
    goal = ctx.record["goal"]
    stamps = ctx.record["stamps"] + _int_arg(ctx, "count", 1, goal)
    new = stamps // goal
    patch: dict[str, Any] = {"status": status, "stamps": stamps % goal}
    if new:  # only then: a change that writes `earned` is one that earned a reward
        patch["rewards"] = ctx.record["rewards"] + new
        patch["earned"] = ctx.record["earned"] + new
    visit = ctx.args.get("visit")
    if visit is not None:
        if type(visit) is not str or not 0 < len(visit) <= 128:
            raise RejectedOpError(
                "argument 'visit' must be a string of 1 to 128 characters",
                reason="invalid-argument",
                argument="visit",
            )
        visits = list(ctx.record.get("visits") or [])
        if visit in visits:
            raise RejectedOpError(f"visit {visit!r} was stamped already", reason="duplicate-visit")
        patch["visits"] = [*visits, visit][-RECENT_VISITS:]
    return patch


def _redeem(ctx: CommandContext) -> dict[str, Any]:
    status = TABLE.advance(ctx.record, "redeem", "a card")
    assert ctx.record is not None
    if ctx.record["rewards"] < 1:
        raise RejectedOpError("the card has no reward to redeem", reason="no-reward")
    return {"status": status, "rewards": ctx.record["rewards"] - 1}


def _close(ctx: CommandContext) -> dict[str, Any]:
    return {"status": TABLE.advance(ctx.record, "close", "a card")}


def _noticed(ctx: CommandContext) -> dict[str, Any]:
    """The server records that the customer was told of their rewards up to ``earned``
    (authored by the ``reward_notice`` effect; not in the state table: a closed card may
    still be told of its last reward)."""
    if ctx.record is None:
        raise RejectedOpError("no such card", reason="record-not-found")
    earned = _int_arg(ctx, "earned", 1, ctx.record["earned"])
    return {"noticed": max(earned, ctx.record.get("noticed") or 0)}


CARDS_COLLECTION = Collection(
    name=CARDS,
    fields={
        "status": Field("str", kind="state", required=True, command_only=True),
        "customer": Field("str", required=True, command_only=True),
        "goal": Field("int", command_only=True),
        "stamps": Field("int", command_only=True),
        "rewards": Field("int", command_only=True),
        "earned": Field("int", command_only=True),
        "visits": Field("list", command_only=True),
        "noticed": Field("int", command_only=True),
        "note": Field("str"),
    },
    strategy="smart_merge",
    state_table=TABLE,
    commands={
        "issue": _issue,
        "stamp": _stamp,
        "redeem": _redeem,
        "close": _close,
        "noticed": _noticed,
    },
)


def _balanced(records: RecordsByCollection) -> Iterator[str]:
    for card in records.get(CARDS, ()):
        counts = [card.fields.get(k) for k in ("goal", "stamps", "rewards", "earned")]
        goal, stamps, rewards, earned = (v if type(v) is int else None for v in counts)
        if goal is None or stamps is None or rewards is None or earned is None:
            yield f"card {card.record_id}: goal, stamps, rewards and earned must be integers"
            continue
        if not 0 <= stamps < goal:
            yield f"card {card.record_id} holds {stamps} stamps of {goal}: a reward not earned"
        if not 0 <= rewards <= earned:
            yield f"card {card.record_id} has {rewards} rewards to redeem of {earned} earned"


#: Every card holds fewer stamps than its goal, and never more rewards than it earned.
CARD_BALANCE = Invariant(
    "card-balance",
    _balanced,
    description="0 <= stamps < goal and 0 <= rewards <= earned, on every card",
)


def link_signature(secret: str, tenant: str, card_id: str, expires_day: int) -> str:
    """HMAC-SHA256 (hex) over ``tenant``, ``card_id`` and the day (days since the epoch) the
    link expires, keyed by the plugin's ``link_secret``."""
    message = f"{tenant}\n{card_id}\n{expires_day}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_link(
    secret: str, tenant: str, card_id: str, expires_day: int, signature: str, today: int
) -> None:
    """Raise :class:`BadSignatureError` unless ``signature`` is right (constant-time
    compare) and the link has not expired by ``today``."""
    want = link_signature(secret, tenant, card_id, expires_day)
    if not hmac.compare_digest(want, signature):
        raise BadSignatureError("the link's signature is wrong")
    if today > expires_day:
        raise BadSignatureError("the link has expired", expired_day=expires_day)


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """HMAC-SHA256 (hex) over ``<timestamp>.<raw body>``, keyed by ``webhook_secret``; the
    header is ``Fynlo-Loyalty-Signature: t=<timestamp>,v1=<signature>``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_webhook(secret: str, header: str, body: bytes, now_s: int) -> None:
    """Raise :class:`BadSignatureError` unless ``header`` signs ``body`` (the raw bytes,
    checked before anything parses them) with a timestamp within
    :data:`WEBHOOK_TOLERANCE_S` of ``now_s``."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    stamp, signature = parts.get("t", ""), parts.get("v1", "")
    if not stamp.isascii() or not stamp.isdigit() or not signature:
        raise BadSignatureError("the webhook has no valid Fynlo-Loyalty-Signature header")
    if not hmac.compare_digest(webhook_signature(secret, int(stamp), body), signature):
        raise BadSignatureError("the webhook's signature is wrong")
    if abs(now_s - int(stamp)) > WEBHOOK_TOLERANCE_S:
        raise BadSignatureError("the webhook's timestamp is outside the tolerance")


class LoyaltyPlugin(DomainPlugin):
    """Stamp cards. Settings: :class:`LoyaltySettings`; routes: ``examples.loyalty.server``."""

    name = "loyalty"
    settings_model = LoyaltySettings
    server_module = "examples.loyalty.server"
    settings: LoyaltySettings

    def collections(self) -> Iterable[Collection]:
        return (CARDS_COLLECTION,)

    def invariants(self) -> Iterable[Invariant]:
        return (CARD_BALANCE,)

    def effects(self, changes: list[Change]) -> list[Effect]:
        """A ``reward_notice`` for every change that earned a reward (it wrote ``earned``),
        keyed by the op that made it, when a notice URL is configured."""
        if self.settings is None or self.settings.notify_url is None:
            return []
        out = []
        for change in changes:
            card = change.record
            stamp = card.stamps.get("earned")
            if (
                card.collection == CARDS
                and stamp is not None
                and stamp.seq == change.seq  # this change wrote `earned`
                and card.fields.get("earned", 0) > 0  # not `issue`, which sets it to 0
            ):
                payload = {"card_id": card.record_id, "earned": card.fields["earned"]}
                out.append(Effect.of(change, self.name, "reward_notice", payload))
        return out

    def effect_handlers(self) -> Mapping[str, EffectHandler]:
        from examples.loyalty.effects import HANDLERS  # the only module here that does I/O

        return HANDLERS
