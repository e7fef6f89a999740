"""Payment attempts inside the order record: the ``payment_*`` commands of ``orders``.

An order's attempts live in its ``payments`` field, a map from attempt id to the attempt,
so one command sees the order's total and every attempt at once, and the rules that need
both are decided against the server's state of that one record:

* at most one live attempt per order (``attempt-live``);
* an attempt cannot start for more than the balance due (``amount-above-balance``);
* cash taken and captures reported by a provider are **facts**: they are never refused for
  the balance; whatever goes beyond it is recorded as ``overpaid`` on the attempt and as a
  refund-due entry (``refunds_due[attempt_id]``) a manager sees (two offline terminals
  taking cash for the same order end here, detected at sync, never silently summed).

Amounts are integer minor units. ``amount`` is what the attempt pays toward the order's
total, ``tip`` is passed through in full, ``surcharge`` is the processing fee a customer
bears where that is legal. Fees are computed on the non-tip part (``captured - change -
tip``) with the tenant's schedule at the op's day (from its HLC), so every replica gets the
same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from fynlo_sync.domains.orders.states import TERMINAL_STATES
from fynlo_sync.domains.payments.fees import METHODS, check_surcharge, date_of, quote
from fynlo_sync.domains.payments.money import percent_of
from fynlo_sync.domains.payments.settings import PaymentsSettings
from fynlo_sync.domains.payments.states import LIVE_STATES, SETTLED_STATES, next_state
from fynlo_sync.errors import IllegalTransitionError, RejectedOpError
from fynlo_sync.hlc import from_wire, millis_of
from fynlo_sync.ops import Op
from fynlo_sync.plugins import SERVER_NODE, Command, CommandContext, Extension, Field

__all__ = [
    "FEE_CORRECTION",
    "ORDER_FIELDS",
    "delete_guard",
    "guard",
    "offline",
    "PAYMENT_COMMANDS",
    "PROVIDER_REFUND_METHODS",
    "PROVIDER_STATE_COMMANDS",
    "attempt_net",
    "commands",
    "derive_money",
    "fee_corrections",
    "order_extension",
    "processing_fee",
]

#: Command name on ``orders`` -> state table command.
PAYMENT_COMMANDS: Final = {
    "payment_start": "start",
    "payment_cash": "cash",
    "payment_submit": "submit",
    "payment_require_action": "require_action",
    "payment_authorise": "authorise",
    "payment_capture": "capture",
    "payment_fail": "fail",
    "payment_cancel": "cancel",
    "payment_expire": "expire",
    "payment_refund": "refund",
    "payment_reverse": "reverse",
}

#: Payment commands outside the state table (they do not move an attempt's state).
FEE_CORRECTION: Final = "payment_fee_correction"

#: The commands that report what a card, open banking or Apple Pay attempt's provider did
#: (money held, taken, taken back, its fee). With ``card_results: server`` only node
#: ``server`` sends them for such an attempt (section 19.4): a terminal starts, cancels,
#: fails and refunds, and cannot mark money taken that no provider took.
PROVIDER_STATE_COMMANDS: Final = frozenset(
    {
        "payment_submit",
        "payment_require_action",
        "payment_authorise",
        "payment_capture",
        "payment_expire",
        "payment_reverse",
        FEE_CORRECTION,
    }
)

#: Methods whose refund the provider makes (Stripe's refund API): with ``card_results:
#: server`` a terminal asks for it (the providers plugin's session ``refund``) and only
#: node ``server`` records it on the order, once the provider confirmed. A bank payment
#: has no refund by API (the restaurant transfers it back): a terminal records that one,
#: as it records a cash refund.
PROVIDER_REFUND_METHODS: Final = frozenset({"card", "apple_pay"})

ORDER_FIELDS: Final = {
    "payments": Field("object", kind="map", command_only=True),
    "refunds_due": Field("object", kind="map", command_only=True),
    # Derived after every write (section 19.2).
    "paid": Field("money", command_only=True),
    "tips": Field("money", command_only=True),
    "collected": Field("money", command_only=True),
    "balance_due": Field("money", command_only=True),
    "refund_due": Field("money", command_only=True),
}


def _reject(reason: str, detail: str, **extra: Any) -> RejectedOpError:
    return RejectedOpError(detail, reason=reason, **extra)


def fee_corrections(attempt: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """An attempt's fee corrections in the order they were made."""
    found = attempt.get("fee_corrections") or {}
    return sorted(found.items(), key=lambda kv: int(kv[1]["n"]))


def processing_fee(attempt: Mapping[str, Any]) -> int:
    """The attempt's processing fee now: the estimate at capture, or the last correction."""
    corrections = fee_corrections(attempt)
    if corrections:
        return int(corrections[-1][1]["processing"])
    return int(attempt["fees"]["processing"])


def attempt_net(attempt: Mapping[str, Any]) -> int:
    """What an attempt collected: captured - change - refunded (0 unless settled)."""
    if attempt["state"] not in SETTLED_STATES:
        return 0
    return int(attempt["captured"] - attempt["change"] - attempt["refunded"])


def _paid(attempt: Mapping[str, Any]) -> int:
    """The part of an attempt's net that pays the order's total (tip and surcharge apart)."""
    if attempt["state"] not in SETTLED_STATES:
        return 0
    return attempt_net(attempt) - int(attempt["tip"]) - int(attempt["surcharge"])


def derive_money(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The order's money figures from its attempts (``total`` is the orders plugin's)."""
    attempts = fields.get("payments") or {}
    dues = fields.get("refunds_due") or {}
    total = fields.get("total") or 0
    settled = [attempts[k] for k in sorted(attempts) if attempts[k]["state"] in SETTLED_STATES]
    paid = sum(_paid(a) for a in settled)
    return {
        "paid": paid,
        "tips": sum(a["tip"] for a in settled),
        "collected": sum(attempt_net(a) for a in settled),
        "balance_due": max(0, total - paid),
        "refund_due": sum(dues[k]["amount"] for k in sorted(dues)),
    }


# ------------------------------------------------------------------------ arguments


def _int(ctx: CommandContext, name: str, *, default: int | None = None, low: int = 0) -> int:
    value = ctx.args.get(name)
    if value is None and default is not None:
        return default
    if type(value) is not int or value < low:
        raise _reject(
            "invalid-argument", f"argument {name!r} must be an integer >= {low}", argument=name
        )
    return value


def _str(ctx: CommandContext, name: str, *, required: bool = True) -> str | None:
    value = ctx.args.get(name)
    if value is None and not required:
        return None
    if type(value) is not str or not value or len(value) > 128:
        raise _reject(
            "invalid-argument", f"argument {name!r} must be a string of 1-128", argument=name
        )
    return value


def _bool(ctx: CommandContext, name: str) -> bool:
    value = ctx.args.get(name, False)
    if value is None:
        return False
    if type(value) is not bool:
        raise _reject("invalid-argument", f"argument {name!r} must be a boolean", argument=name)
    return value


def _order(ctx: CommandContext, *, refund: bool = False) -> Mapping[str, Any]:
    order = ctx.record
    if order is None:
        raise _reject("record-not-found", "no such order")
    status = order.get("status")
    if status == "voided" or (status in TERMINAL_STATES and not refund):
        raise _reject("order-not-payable", f"the order is {status}", state=status)
    return order


def _attempts(order: Mapping[str, Any]) -> dict[str, Any]:
    return dict(order.get("payments") or {})


def _attempt(ctx: CommandContext, command: str) -> tuple[str, dict[str, Any], str]:
    """The attempt the command names, copied, and the state the table sends it to."""
    order = _order(ctx, refund=command == "refund")
    attempt_id = _str(ctx, "attempt_id")
    assert attempt_id is not None
    found = _attempts(order).get(attempt_id)
    state = None if found is None else found["state"]
    target = next_state(state, command)
    if target is None:
        raise IllegalTransitionError(
            f"an attempt cannot {command} when {state or 'it does not exist'}",
            reason="illegal-transition",
            state=state,
            command=command,
        )
    return attempt_id, dict(found or {}), target


def _reported(ctx: CommandContext, settings: PaymentsSettings, attempt: Mapping[str, Any]) -> None:
    """With ``card_results: server``, refuse a provider-state command for a non-cash
    attempt unless the server made it (``server-only``)."""
    if (
        settings.card_results == "server"
        and ctx.op.name in PROVIDER_STATE_COMMANDS
        and attempt.get("method") != "cash"
        and ctx.op.node_id != SERVER_NODE
    ):
        raise _reject(
            "server-only",
            f"a {attempt.get('method')} attempt's provider state is reported by the server "
            "(card_results: server): a terminal cannot mark it",
            method=attempt.get("method"),
        )


def _put(ctx: CommandContext, attempt_id: str, attempt: dict[str, Any]) -> dict[str, Any]:
    assert ctx.record is not None
    attempts = _attempts(ctx.record)
    attempts[attempt_id] = attempt
    return {"payments": attempts}


def _day(ctx: CommandContext) -> str:
    return date_of(millis_of(from_wire(ctx.op.hlc)))


#: The staff permission each manager rule needs (protocol section 19.4).
REFUND_ABOVE_LIMIT: Final = "refund.above_limit"
OFFLINE_OVERRIDE: Final = "payment.offline"


def _manager(ctx: CommandContext, why: str, permission: str) -> str | None:
    """A manager's approval, and who gave it. With the staff plugin (actors checked) the
    op's actor must be an active employee holding ``permission`` (``forbidden`` names it):
    a manager signs in for the op, and is its approver. Without it, the free-text
    ``approved_by`` argument is the approval (``manager-required`` when missing)."""
    if ctx.require(permission, why):
        return ctx.op.actor_id
    approver = _str(ctx, "approved_by", required=False)
    if approver is None:
        raise _reject("manager-required", f"{why} needs a manager's approval")
    return approver


def offline(ctx: CommandContext, settings: PaymentsSettings) -> bool:
    """Whether the op was made offline, for the offline risk limits: the terminal says so
    (``offline: true``), or the server received it more than ``offline_after_ms`` after the
    time of its HLC (it waited in the terminal's outbox). A terminal applying the op
    optimistically has no receive time and goes by its own claim; the server's own ops
    are never offline."""
    if _bool(ctx, "offline"):
        return True
    if ctx.received_ms is None or ctx.op.node_id == SERVER_NODE:
        return False
    return ctx.received_ms - millis_of(from_wire(ctx.op.hlc)) > settings.offline_after_ms


# -------------------------------------------------------------------------- commands


def commands(settings: PaymentsSettings) -> dict[str, Command]:
    """The ``payment_*`` commands, deciding with ``settings``."""

    def new_attempt(ctx: CommandContext, method: str, amount: int, tip: int) -> dict[str, Any]:
        order = ctx.record
        assert order is not None
        currency = ctx.args.get("currency")
        if currency is not None and currency != order.get("currency"):
            raise _reject("currency-mismatch", f"the order is in {order.get('currency')}")
        if tip and not settings.tips.enabled:
            raise _reject("tips-disabled", "tips are turned off for this restaurant")
        return {
            "method": method,
            "amount": amount,
            "tip": tip,
            "surcharge": 0,
            "currency": order["currency"],
            "state": "created",
            "captured": 0,
            "change": 0,
            "tendered": None,
            "refunded": 0,
            "refunds": {},
            "fees": None,
            "overpaid": 0,
            "offline": offline(ctx, settings),
            "approved_by": _str(ctx, "approved_by", required=False),
            "employee": _str(ctx, "employee", required=False),
            "provider_ref": None,
            "failure_reason": None,
            "created_by": ctx.op.node_id,
        }

    def live(order: Mapping[str, Any]) -> str | None:
        attempts = _attempts(order)
        for key in sorted(attempts):
            if attempts[key]["state"] in LIVE_STATES:
                return key
        return None

    def settle(
        ctx: CommandContext, attempt_id: str, attempt: dict[str, Any], captured: int
    ) -> dict[str, Any]:
        """Record a capture (a fact): fees on the non-tip part, any overpayment as due."""
        order = ctx.record
        assert order is not None
        attempt["state"] = "captured"
        attempt["captured"] = captured
        non_tip = captured - attempt["change"] - attempt["tip"]
        fees = quote(
            settings.schedule,
            attempt["method"],
            settings.country,
            attempt["currency"],
            _day(ctx),
            non_tip,
        )
        actual = ctx.args.get("processing_fee")
        if actual is not None and (type(actual) is not int or actual < 0):
            raise _reject("invalid-argument", "processing_fee must be an integer >= 0")
        attempt["fees"] = {
            "processing": fees.processing if actual is None else actual,
            "platform": fees.platform,
            "platform_bp": 0 if fees.platform_rate is None else fees.platform_rate.rate_bp,
            "rounding": "half-up" if fees.platform_rate is None else fees.platform_rate.rounding,
            "day": _day(ctx),
        }
        due = order.get("balance_due")
        balance = (order.get("total") or 0) - (order.get("paid") or 0) if due is None else due
        paying = non_tip - attempt["surcharge"]
        overpaid = max(0, paying - max(0, balance))
        attempt["overpaid"] = overpaid
        patch = _put(ctx, attempt_id, attempt)
        dues = dict(order.get("refunds_due") or {})
        patch["refunds_due"] = dues
        if overpaid:
            dues[attempt_id] = {
                "amount": overpaid,
                "reason": "overpayment",
                "method": attempt["method"],
            }
            patch["refunds_due"] = dues
        return patch

    def start(ctx: CommandContext) -> dict[str, Any]:
        attempt_id, _, _ = _attempt(ctx, "start")
        order = ctx.record
        assert order is not None
        method = ctx.args.get("method")
        if method not in METHODS or method == "cash":
            raise _reject(
                "invalid-argument",
                "method must be card, open_banking or apple_pay (cash: payment_cash)",
                argument="method",
            )
        amount = _int(ctx, "amount", low=1)
        tip = _int(ctx, "tip", default=0)
        if _bool(ctx, "offline"):
            raise _reject(
                "method-needs-network",
                f"{method} needs the server: take cash or wait for the network",
                method=method,
            )
        other = live(order)
        if other is not None:
            raise _reject(
                "attempt-live",
                f"attempt {other!r} is still live: finish or cancel it first",
                attempt_id=other,
            )
        balance = order.get("balance_due", order.get("total") or 0)
        if amount > balance:
            raise _reject(
                "amount-above-balance",
                f"the balance due is {balance}; an attempt cannot start for {amount}",
                balance_due=balance,
            )
        attempt = new_attempt(ctx, method, amount, tip)
        if settings.fee_bearer == "customer":
            rate = settings.schedule.rate(
                "processing", method, settings.country, attempt["currency"], _day(ctx)
            )
            funding = _str(ctx, "funding", required=False)
            bp = check_surcharge(
                "customer",
                country=settings.country,
                method=method,
                day=_day(ctx),
                surcharge_bp=settings.surcharge_bp,
                processing_bp=0 if rate is None else rate.rate_bp,
                consumer=settings.consumer,
                funding=funding,
                rules=settings.surcharge_rules,
            )
            attempt["surcharge"] = percent_of(amount, bp, settings.tips.rounding)
        return _put(ctx, attempt_id, attempt)

    def cash(ctx: CommandContext) -> dict[str, Any]:
        attempt_id, _, _ = _attempt(ctx, "cash")
        amount = _int(ctx, "amount", low=1)
        tip = _int(ctx, "tip", default=0)
        tendered = _int(ctx, "tendered", low=1)
        if tendered < amount + tip:
            raise _reject(
                "tendered-short", f"tendered {tendered} is less than the {amount + tip} due"
            )
        attempt = new_attempt(ctx, "cash", amount, tip)
        if attempt["offline"] and amount > settings.offline_manager_limit:
            attempt["approved_by"] = _manager(
                ctx, f"cash above {settings.offline_manager_limit} taken offline", OFFLINE_OVERRIDE
            )
        attempt["tendered"] = tendered
        attempt["change"] = tendered - amount - tip
        return settle(ctx, attempt_id, attempt, tendered)

    def step(command: str, *, reason: bool = False) -> Command:
        def run(ctx: CommandContext) -> dict[str, Any]:
            attempt_id, attempt, target = _attempt(ctx, command)
            _reported(ctx, settings, attempt)
            ref = _str(ctx, "provider_ref", required=False)
            if ref is not None:
                attempt["provider_ref"] = ref
            if reason:
                attempt["failure_reason"] = _str(ctx, "reason", required=False)
            if command == "cancel" and offline(ctx, settings):
                attempt["approved_by"] = _manager(ctx, "a void made offline", OFFLINE_OVERRIDE)
            attempt["state"] = target
            return _put(ctx, attempt_id, attempt)

        run.__name__ = f"payment_{command}"
        return run

    def capture(ctx: CommandContext) -> dict[str, Any]:
        attempt_id, attempt, _ = _attempt(ctx, "capture")
        _reported(ctx, settings, attempt)
        charged = attempt["amount"] + attempt["tip"] + attempt["surcharge"]
        # A tip added after authorisation (a card held, the tip written on the slip)
        # replaces the one authorised; it must fit in what was authorised.
        tip = _int(ctx, "tip", default=attempt["tip"])
        if tip and tip != attempt["tip"] and not settings.tips.enabled:
            raise _reject("tips-disabled", "tips are turned off for this restaurant")
        amount = _int(ctx, "amount", default=attempt["amount"] + tip + attempt["surcharge"], low=1)
        if amount > charged:
            raise _reject(
                "capture-above-authorised", f"only {charged} can be captured", capturable=charged
            )
        if amount < tip + attempt["surcharge"] + 1:
            raise _reject("invalid-argument", "a capture must cover the tip and surcharge")
        attempt["tip"] = tip
        attempt["amount"] = amount - tip - attempt["surcharge"]
        ref = _str(ctx, "provider_ref", required=False)
        if ref is not None:
            attempt["provider_ref"] = ref
        return settle(ctx, attempt_id, attempt, amount)

    def refund(ctx: CommandContext) -> dict[str, Any]:
        attempt_id, attempt, _ = _attempt(ctx, "refund")
        if (
            settings.card_results == "server"
            and attempt["method"] in PROVIDER_REFUND_METHODS
            and ctx.op.node_id != SERVER_NODE
        ):
            raise _reject(
                "server-only",
                f"a {attempt['method']} refund is made by the provider and recorded by the "
                "server (card_results: server): ask for it with the payment session's refund",
                method=attempt["method"],
            )
        order = ctx.record
        assert order is not None
        refund_id = _str(ctx, "refund_id")
        amount = _int(ctx, "amount", low=1)
        method = ctx.args.get("method")
        if method is not None and method != attempt["method"]:
            raise _reject(
                "refund-method-mismatch",
                f"a refund goes to the original method ({attempt['method']})",
            )
        refunds = dict(attempt["refunds"])
        if refund_id in refunds:
            raise _reject("duplicate-refund", f"refund {refund_id!r} already exists")
        left = attempt_net(attempt)
        if amount > left:
            raise _reject(
                "refund-above-captured",
                f"only {left} of this payment is left to refund",
                refundable=left,
            )
        approver = _str(ctx, "approved_by", required=False)
        if amount > settings.refund_manager_limit:
            approver = _manager(
                ctx, f"a refund above {settings.refund_manager_limit}", REFUND_ABOVE_LIMIT
            )
        if offline(ctx, settings):
            approver = _manager(ctx, "a refund made offline", OFFLINE_OVERRIDE)
        refunds[refund_id] = {
            "amount": amount,
            "by": ctx.op.node_id,
            "approved_by": approver,
            "day": _day(ctx),
        }
        attempt["refunds"] = refunds
        attempt["refunded"] += amount
        attempt["state"] = "refunded" if amount == left else "refunded_partial"
        patch = _put(ctx, attempt_id, attempt)
        dues = dict(order.get("refunds_due") or {})
        if attempt_id in dues:
            remaining = dues[attempt_id]["amount"] - amount
            if remaining > 0:
                dues[attempt_id] = {**dues[attempt_id], "amount": remaining}
            else:
                del dues[attempt_id]
            patch["refunds_due"] = dues
        return patch

    def reverse(ctx: CommandContext) -> dict[str, Any]:
        """A late failure: the provider took back a payment it had reported captured."""
        attempt_id, attempt, target = _attempt(ctx, "reverse")
        order = ctx.record
        assert order is not None
        if attempt["method"] == "cash":
            raise _reject(
                "cash-not-reversible", "cash taken is not reversed: refund it from the drawer"
            )
        _reported(ctx, settings, attempt)
        ref = _str(ctx, "provider_ref", required=False)
        if ref is not None:
            attempt["provider_ref"] = ref
        attempt["failure_reason"] = _str(ctx, "reason", required=False)
        attempt["state"] = target
        attempt["reversed"] = {"day": _day(ctx), "by": ctx.op.node_id}
        patch = _put(ctx, attempt_id, attempt)
        dues = dict(order.get("refunds_due") or {})
        if attempt_id in dues:
            del dues[attempt_id]  # nothing to pay back: the money never stayed
            patch["refunds_due"] = dues
        return patch

    def fee_correction(ctx: CommandContext) -> dict[str, Any]:
        """The processor's actual fee differs from the estimate: record it. The capture's
        posting set stays as it was; the ledger posts the difference as a new set."""
        order = _order(ctx, refund=True)
        attempt_id = _str(ctx, "attempt_id")
        correction_id = _str(ctx, "correction_id")
        assert attempt_id is not None and correction_id is not None
        found = _attempts(order).get(attempt_id)
        if found is None or found["state"] not in SETTLED_STATES:
            raise _reject(
                "not-captured",
                f"attempt {attempt_id!r} holds no captured payment to correct a fee of",
                state=None if found is None else found["state"],
            )
        _reported(ctx, settings, found)
        actual = _int(ctx, "processing_fee")
        attempt = dict(found)
        corrections = dict(attempt.get("fee_corrections") or {})
        if correction_id in corrections:
            raise _reject("duplicate-correction", f"correction {correction_id!r} exists")
        if actual == processing_fee(attempt):
            raise _reject("fee-unchanged", f"the processing fee is already {actual}")
        corrections[correction_id] = {
            "processing": actual,
            "n": len(corrections) + 1,
            "day": _day(ctx),
        }
        attempt["fee_corrections"] = corrections
        return _put(ctx, attempt_id, attempt)

    table: dict[str, Callable[[CommandContext], dict[str, Any]]] = {
        "payment_start": start,
        "payment_cash": cash,
        "payment_submit": step("submit"),
        "payment_require_action": step("require_action"),
        "payment_authorise": step("authorise"),
        "payment_capture": capture,
        "payment_fail": step("fail", reason=True),
        "payment_cancel": step("cancel", reason=True),
        "payment_expire": step("expire"),
        "payment_refund": refund,
        "payment_reverse": reverse,
        FEE_CORRECTION: fee_correction,
    }
    return table


def guard(before: Mapping[str, Any] | None, after: Mapping[str, Any], ctx: CommandContext) -> None:
    """Rules over the orders plugin's own commands once an order holds payments: it cannot
    be voided or closed while an attempt is live, nor voided while it holds captured money
    (refund first), and its total cannot drop below what was paid toward it."""
    if ctx.op.name in PAYMENT_COMMANDS or ctx.op.name == FEE_CORRECTION or before is None:
        return
    attempts = after.get("payments") or {}
    status = after.get("status")
    if status in TERMINAL_STATES:
        for key in sorted(attempts):
            if attempts[key]["state"] in LIVE_STATES:
                raise _reject("attempt-live", f"attempt {key!r} is still live", attempt_id=key)
    if status == "voided" and after.get("collected"):
        raise _reject(
            "payment-captured",
            f"the order holds {after['collected']} captured: refund it before voiding",
        )
    if after.get("paid", 0) > (after.get("total") or 0) + after.get("refund_due", 0):
        raise _reject(
            "below-paid",
            f"{after['paid']} was paid toward this order; its total cannot drop below it",
        )


def delete_guard(fields: Mapping[str, Any], op: Op) -> None:
    """An order is deleted only while none of its attempts is live or has moved money
    (every attempt failed, cancelled or expired with nothing captured): the ledger and
    the drawers record every payment against its order, so a paid order is voided (after
    a refund), never deleted. ``attempt-live`` or ``payment-recorded`` otherwise."""
    attempts = fields.get("payments") or {}
    for key in sorted(attempts):
        a = attempts[key]
        if a["state"] in LIVE_STATES:
            raise _reject(
                "attempt-live",
                f"attempt {key!r} is still live: finish or cancel it before deleting the order",
                attempt_id=key,
            )
        if a["captured"] or a.get("reversed") is not None:
            raise _reject(
                "payment-recorded",
                f"attempt {key!r} ({a['state']}) moved money and the ledger records it: "
                "refund and void the order instead of deleting it",
                attempt_id=key,
            )
    if fields.get("refunds_due"):
        raise _reject("payment-recorded", "the order has money due back: settle it first")


def order_extension(settings: PaymentsSettings) -> Extension:
    """What the payments plugin adds to ``orders``."""
    return Extension(
        collection="orders",
        fields=ORDER_FIELDS,
        commands=commands(settings),
        derive=derive_money,
        guard=guard,
        delete_guard=delete_guard,
    )
