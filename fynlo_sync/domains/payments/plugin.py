"""The payments plugin: payment attempts in the order, cash drawers, the ledger.

Settings come from ``FYNLO_PAYMENTS_<FIELD>`` (:class:`PaymentsConfig`, validated when the
server or ``fynlo check`` starts); the fee schedule is the seed data of
:data:`~fynlo_sync.domains.payments.fees.DEFAULT_SCHEDULE` unless a
:class:`~fynlo_sync.domains.payments.settings.PaymentsSettings` is passed in code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from fynlo_sync.domains.payments.attempts import order_extension
from fynlo_sync.domains.payments.drawers import DRAWERS, DRAWERS_COLLECTION, match_movement
from fynlo_sync.domains.payments.invariants import check_ledger, check_money
from fynlo_sync.domains.payments.ledger import LEDGER, LEDGER_COLLECTION, posting_sets
from fynlo_sync.domains.payments.money import MoneyError
from fynlo_sync.domains.payments.settings import DEFAULT_SETTINGS, PaymentsSettings
from fynlo_sync.domains.payments.tips import TipSettings
from fynlo_sync.effects import Draft, Effect, EffectContext, EffectHandler
from fynlo_sync.ops import Change, Record
from fynlo_sync.plugins import (
    Collection,
    DomainPlugin,
    Extension,
    Invariant,
    RecordsByCollection,
)

__all__ = ["PaymentsConfig", "PaymentsPlugin"]


class PaymentsConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``FYNLO_PAYMENTS_*``: the tenant's payment settings (defaults in protocol 19.4).

    ``FEE_BEARER=customer`` is refused where surcharges are banned (``COUNTRY=GB``:
    surcharge-banned) and capped where allowed (US: ``SURCHARGE_BP`` <= 300)."""

    country: Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}$", max_length=2)] = "GB"
    fee_bearer: Literal["restaurant", "customer"] = "restaurant"
    surcharge_bp: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0
    consumer: bool = True
    refund_manager_limit: Annotated[int, msgspec.Meta(ge=0)] = 5000
    offline_manager_limit: Annotated[int, msgspec.Meta(ge=0)] = 10000
    offline_after_ms: Annotated[int, msgspec.Meta(ge=1)] = 120_000
    tips_enabled: bool = True
    tip_presets_bp: tuple[int, ...] = (500, 1000, 2000)
    tip_base: Literal["amount", "order_total"] = "amount"
    tip_rounding: Literal["half-up", "half-even", "floor", "ceil"] = "half-up"
    card_results: Literal["auto", "terminal", "server"] = "auto"

    def __post_init__(self) -> None:
        try:
            self.to_settings()
        except MoneyError as exc:
            raise ValueError(f"{exc.extra.get('reason')}: {exc.detail}") from None

    def to_settings(self) -> PaymentsSettings:
        return PaymentsSettings(
            country=self.country,
            tips=TipSettings(
                enabled=self.tips_enabled,
                presets_bp=self.tip_presets_bp,
                base=self.tip_base,
                rounding=self.tip_rounding,
            ),
            fee_bearer=self.fee_bearer,
            surcharge_bp=self.surcharge_bp,
            consumer=self.consumer,
            refund_manager_limit=self.refund_manager_limit,
            offline_manager_limit=self.offline_manager_limit,
            offline_after_ms=self.offline_after_ms,
            card_results="terminal" if self.card_results == "auto" else self.card_results,
        )


async def _post_ledger(ctx: EffectContext) -> None:
    """Write the posting sets the order's attempts call for that the ledger lacks, as
    ``post`` commands authored by the server (committed with the effect's completion). A
    set already there is skipped, so a re-run or a second effect writes nothing twice."""
    order_id = ctx.effect.payload["order_id"]
    order = await ctx.read("orders", order_id)
    if order is None or order.deleted:
        return
    for posting_set in posting_sets(order_id, order.fields):
        if await ctx.read(LEDGER, posting_set.set_id) is None:
            ctx.author.command(LEDGER, posting_set.set_id, "post", posting_set.to_fields())


async def _match_cash(ctx: EffectContext) -> None:
    """Check a drawer's ``sale`` or ``refund`` movement against the order it names, and
    flag it (``drawer_flag``, as node ``server``) when the order does not record that
    payment: the cash moved, the server refused or never saw the payment (protocol 19.7).
    Decided under the tenant's lock at completion, so the order is read as it is then."""
    drawer_id = str(ctx.effect.payload["drawer_id"])
    movement_id = str(ctx.effect.payload["movement_id"])
    drawer = await ctx.read(DRAWERS, drawer_id)
    if drawer is None or drawer.deleted:
        return
    move = (drawer.fields.get("movements") or {}).get(movement_id)
    if move is None or not move.get("payment"):
        return
    order_key = ("orders", str(move["payment"]["order_id"]))
    drawer_key = (DRAWERS, drawer_id)

    def build(found: Mapping[tuple[str, str], Record]) -> Sequence[Draft]:
        now = found.get(drawer_key)
        if now is None or now.deleted or movement_id in (now.fields.get("findings") or {}):
            return []
        order = found.get(order_key)
        reason = match_movement(
            move,
            None if order is None or order.deleted else order.fields,
            order is not None and order.deleted,
        )
        if reason is None:
            return []
        args = {"movement_id": movement_id, "reason": reason}
        return [Draft.command(DRAWERS, drawer_id, "drawer_flag", args)]

    ctx.author.decide([drawer_key, order_key], build)


def _by_id(records: RecordsByCollection, name: str) -> dict[str, Mapping[str, Any]]:
    return {r.record_id: r.fields for r in records.get(name, ())}


class PaymentsPlugin(DomainPlugin):
    """Payments. Needs the orders plugin in the same registry (it extends ``orders``).

    Built without settings or from a :class:`PaymentsConfig` whose ``card_results`` is
    ``auto``, it decides ``card_results`` in its registry: ``server`` beside the
    providers plugin, else ``terminal``. :class:`PaymentsSettings` are taken as given."""

    name = "payments"
    settings_model: ClassVar[type[msgspec.Struct] | None] = PaymentsConfig

    def __init__(
        self, settings: PaymentsSettings | PaymentsConfig | None = None, *, ledger: bool = True
    ) -> None:
        super().__init__(settings)
        #: Whether commits call for the server's effects, ``post_ledger`` and
        #: ``match_cash`` (the simulator, which does not model server-authored ops yet,
        #: turns them off).
        self.ledger = ledger
        #: Whether ``card_results`` is decided by the registry (:meth:`joined`).
        self.card_results_auto = settings is None or (
            isinstance(settings, PaymentsConfig) and settings.card_results == "auto"
        )
        if isinstance(settings, PaymentsConfig):
            self.rules = settings.to_settings()
        else:
            self.rules = DEFAULT_SETTINGS if settings is None else settings

    def joined(self, names: frozenset[str]) -> PaymentsPlugin:
        """With ``card_results`` auto: ``server`` when the providers plugin is loaded too
        (the provider's word reaches the order only as the server's ops), else as is."""
        if not self.card_results_auto or "providers" not in names:
            return self
        rules = dataclasses.replace(self.rules, card_results="server")
        decided = PaymentsPlugin(rules, ledger=self.ledger)
        decided.settings = self.settings
        return decided

    def collections(self) -> Iterable[Collection]:
        return (DRAWERS_COLLECTION, LEDGER_COLLECTION)

    def extensions(self) -> Iterable[Extension]:
        return (order_extension(self.rules),)

    def effects(self, changes: list[Change]) -> list[Effect]:
        """A change of an order's payments calls for its posting sets (``post_ledger``,
        keyed by the op that made the change); a drawer movement naming a payment, for
        the check that the order records it (``match_cash``)."""
        out: list[Effect] = []
        for change in changes if self.ledger else ():
            record = change.record
            if record.collection == DRAWERS and not record.deleted:
                move_stamp = record.stamps.get("movements")
                if move_stamp is not None and move_stamp.seq == change.seq:
                    out.extend(self._cash_checks(change))
                continue
            stamp = record.stamps.get("payments")
            if (
                record.collection == "orders"
                and not record.deleted
                and stamp is not None
                and stamp.seq == change.seq
            ):
                out.append(
                    Effect.of(change, self.name, "post_ledger", {"order_id": record.record_id})
                )
        return out

    def _cash_checks(self, change: Change) -> list[Effect]:
        """The ``match_cash`` effect for the payment movement the change's op added."""
        moves = change.record.fields.get("movements") or {}
        return [
            Effect.of(
                change,
                self.name,
                "match_cash",
                {"drawer_id": change.record.record_id, "movement_id": key},
            )
            for key in sorted(moves)
            if moves[key].get("op_id") == change.op_id and moves[key].get("payment")
        ]

    def effect_handlers(self) -> Mapping[str, EffectHandler]:
        return {"match_cash": _match_cash, "post_ledger": _post_ledger}

    def invariants(self) -> Iterable[Invariant]:
        rules = self.rules

        def money(records: RecordsByCollection) -> list[str]:
            return check_money(
                {"orders": _by_id(records, "orders"), DRAWERS: _by_id(records, DRAWERS)}, rules
            )

        def ledger(records: RecordsByCollection) -> list[str]:
            return check_ledger(_by_id(records, "orders"), _by_id(records, LEDGER))

        return (
            Invariant(
                "payments-money",
                money,
                "per order: collected = captured - change - refunds, paid <= total + due "
                "back, refunds <= captures, platform fee = its rate of the non-tip amount; "
                "per drawer: expected = float + in - out",
            ),
            Invariant(
                "payments-ledger",
                ledger,
                "every posting set balances, one capture set per attempt, each written set "
                "is the one its payment calls for",
                on_terminals=False,
            ),
        )
