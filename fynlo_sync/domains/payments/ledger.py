"""The ledger: balanced, immutable posting sets, one per payment event.

Every capture and every refund of an attempt posts one set of signed entries that sums to
zero (one currency per set). A capture of ``captured`` G with ``change`` K, tip T,
processing fee P and platform fee F posts:

=====================  ==================  ====================
account                kind                amount
=====================  ==================  ====================
``customer``           ``gross``           -G
``customer``           ``change``          +K
``processor``          ``processor_fee``   +P
``platform``           ``platform_fee``    +F
``tips:<employee>``    ``tip``             +T   (passed through in full)
``restaurant:<m>``     ``net``             +(G - K - P - F - T)
=====================  ==================  ====================

A refund R posts ``customer`` +R and ``restaurant:<m>`` -R (kind ``refund``; fees are not
returned). A correction (``payment_fee_correction``: the processor's actual fee differs
from the one the ledger holds by D) posts ``processor`` +D and ``restaurant:<m>`` -D as a
new set, never an edit. A reversal (``payment_reverse``: the provider took a captured
payment back) posts every entry of the capture set and its corrections negated (summed
by account and kind, kinds unchanged), on the day of the reversal. Entries of zero are
left out. Set ids are stable: ``<order>:<attempt>:capture``, ``<order>:<attempt>:reversal``,
``<order>:<attempt>:correction:<id>`` and ``<order>:<attempt>:refund:<refund_id>`` (an id longer
than an identifier's 128 characters is ``ps:`` and the MD5 of it), so writing the same set
twice is idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from fynlo_sync.domains.payments.attempts import fee_corrections
from fynlo_sync.domains.payments.states import SETTLED_STATES
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.ops import Record
from fynlo_sync.plugins import SERVER_NODE, Collection, CommandContext, Field

__all__ = [
    "LEDGER",
    "LEDGER_COLLECTION",
    "Posting",
    "PostingSet",
    "correction",
    "from_fields",
    "ledger_of",
    "posting_sets",
    "set_id",
    "unbalanced",
]

LEDGER: Final = "ledger"


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    kind: str
    amount: int


@dataclass(frozen=True, slots=True)
class PostingSet:
    set_id: str
    event: str
    order_id: str
    attempt_id: str
    method: str
    currency: str
    day: str
    postings: tuple[Posting, ...]

    def total(self) -> int:
        return sum(p.amount for p in self.postings)

    def to_fields(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "order_id": self.order_id,
            "attempt_id": self.attempt_id,
            "method": self.method,
            "currency": self.currency,
            "day": self.day,
            "postings": [
                {"account": p.account, "kind": p.kind, "amount": p.amount} for p in self.postings
            ],
        }


def from_fields(set_id: str, fields: Mapping[str, Any]) -> PostingSet:
    return PostingSet(
        set_id=set_id,
        event=fields["event"],
        order_id=fields["order_id"],
        attempt_id=fields["attempt_id"],
        method=fields["method"],
        currency=fields["currency"],
        day=fields["day"],
        postings=tuple(Posting(p["account"], p["kind"], p["amount"]) for p in fields["postings"]),
    )


def set_id(order_id: str, attempt_id: str, event: str, *more: str) -> str:
    """The stable id of a posting set (a record id of ``ledger``)."""
    text = ":".join((order_id, attempt_id, event, *more))
    if len(text) <= 128:
        return text
    return "ps:" + hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def _legs(*legs: tuple[str, str, int]) -> tuple[Posting, ...]:
    return tuple(Posting(a, k, n) for a, k, n in legs if n != 0)


def _posted(
    order_id: str,
    attempt_id: str,
    attempt: Mapping[str, Any],
    event: str,
    day: str,
    legs: tuple[Posting, ...],
    *more: str,
) -> PostingSet:
    """The posting set of ``event`` on the attempt (``more``: the rest of its id)."""
    return PostingSet(
        set_id=set_id(order_id, attempt_id, event, *more),
        event=event,
        order_id=order_id,
        attempt_id=attempt_id,
        method=attempt["method"],
        currency=attempt["currency"],
        day=day,
        postings=legs,
    )


def posting_sets(order_id: str, order: Mapping[str, Any]) -> list[PostingSet]:
    """Every posting set an order's attempts call for, in a stable order."""
    out: list[PostingSet] = []
    attempts = order.get("payments") or {}
    for attempt_id in sorted(attempts):
        a = attempts[attempt_id]
        reversed_ = a.get("reversed")
        if a["state"] not in SETTLED_STATES and reversed_ is None:
            continue
        method, fees = a["method"], a["fees"]
        funds = f"restaurant:{method}"
        captured, change, tip = a["captured"], a["change"], a["tip"]
        processing, platform = fees["processing"], fees["platform"]
        net = captured - change - processing - platform - tip
        capture = _posted(
            order_id,
            attempt_id,
            a,
            "capture",
            fees["day"],
            _legs(
                ("customer", "gross", -captured),
                ("customer", "change", change),
                ("processor", "processor_fee", processing),
                ("platform", "platform_fee", platform),
                (f"tips:{a.get('employee') or 'pool'}", "tip", tip),
                (funds, "net", net),
            ),
        )
        out.append(capture)
        moved = list(capture.postings)
        fee = processing
        for correction_id, c in fee_corrections(a):
            delta = int(c["processing"]) - fee
            fee = int(c["processing"])
            legs = _legs(("processor", "processor_fee", delta), (funds, "net", -delta))
            fix = _posted(order_id, attempt_id, a, "correction", c["day"], legs, correction_id)
            out.append(fix)
            moved.extend(fix.postings)
        if reversed_ is not None:
            undo: dict[tuple[str, str], int] = {}
            for p in moved:  # the capture and its corrections, undone in one set
                undo[(p.account, p.kind)] = undo.get((p.account, p.kind), 0) - p.amount
            legs = _legs(*((acc, kind, n) for (acc, kind), n in undo.items()))
            out.append(_posted(order_id, attempt_id, a, "reversal", reversed_["day"], legs))
        refunds = a.get("refunds") or {}
        for refund_id in sorted(refunds):
            amount = refunds[refund_id]["amount"]
            legs = _legs(("customer", "refund", amount), (funds, "refund", -amount))
            day = refunds[refund_id].get("day") or fees["day"]
            out.append(_posted(order_id, attempt_id, a, "refund", day, legs, refund_id))
    return out


def correction(original: PostingSet, correction_id: str, actual_fee: int) -> PostingSet:
    """A new set moving the difference between the estimated and the actual processing
    fee between the processor and the restaurant (the original set stays as it was)."""
    estimated = sum(p.amount for p in original.postings if p.kind == "processor_fee")
    delta = actual_fee - estimated
    return PostingSet(
        set_id=set_id(original.order_id, original.attempt_id, "correction", correction_id),
        event="correction",
        order_id=original.order_id,
        attempt_id=original.attempt_id,
        method=original.method,
        currency=original.currency,
        day=original.day,
        postings=_legs(
            ("processor", "processor_fee", delta),
            (f"restaurant:{original.method}", "net", -delta),
        ),
    )


def ledger_of(records: Iterable[Record]) -> tuple[list[PostingSet], int, int]:
    """A tenant's posting sets from its records: the ``ledger`` collection's, then those
    its live orders call for that are not written yet. Returns (sets, written, pending)."""
    live = [r for r in records if not r.deleted]
    written = {
        r.record_id: from_fields(r.record_id, r.fields) for r in live if r.collection == LEDGER
    }
    pending = []
    for r in sorted((r for r in live if r.collection == "orders"), key=lambda r: r.record_id):
        for s in posting_sets(r.record_id, r.fields):
            if s.set_id not in written:
                pending.append(s)
    return [written[k] for k in sorted(written)] + pending, len(written), len(pending)


def unbalanced(sets: Iterable[PostingSet]) -> list[str]:
    """The ids of sets whose entries do not sum to zero."""
    return [s.set_id for s in sets if s.total() != 0]


def _post(ctx: CommandContext) -> dict[str, Any]:
    """``post``: write a posting set once (the server only). The args are the set's fields."""
    if ctx.op.node_id != SERVER_NODE:
        # A terminal's set could take the id of a capture's set before the server posts
        # it, and the server's own would then be refused ``posting-exists``.
        raise RejectedOpError("only the server posts to the ledger", reason="server-only")
    if ctx.record is not None:
        raise RejectedOpError(
            "a posting set is immutable; post a correction", reason="posting-exists"
        )
    try:
        candidate = from_fields(ctx.op.record_id, ctx.args)
    except (KeyError, TypeError) as exc:
        raise RejectedOpError(f"not a posting set: {exc}", reason="invalid-argument") from None
    texts = (
        candidate.event,
        candidate.order_id,
        candidate.attempt_id,
        candidate.method,
        candidate.currency,
        candidate.day,
    )
    if any(type(text) is not str for text in texts):
        raise RejectedOpError(
            "event, order_id, attempt_id, method, currency and day must be strings",
            reason="invalid-argument",
        )
    bad = [
        p
        for p in candidate.postings
        if type(p.amount) is not int or type(p.account) is not str or type(p.kind) is not str
    ]
    if bad or not candidate.postings:
        raise RejectedOpError("postings must be {account, kind, amount}", reason="invalid-argument")
    if candidate.total() != 0:
        raise RejectedOpError(
            f"the postings sum to {candidate.total()}, not 0", reason="unbalanced"
        )
    return candidate.to_fields()


LEDGER_COLLECTION: Final = Collection(
    name=LEDGER,
    fields={
        name: Field(kind_, required=True, command_only=True)  # type: ignore[arg-type]
        for name, kind_ in (
            ("event", "str"),
            ("order_id", "str"),
            ("attempt_id", "str"),
            ("method", "str"),
            ("currency", "str"),
            ("day", "str"),
            ("postings", "list"),
        )
    },
    strategy="server_wins",
    commands={"post": _post},
)
