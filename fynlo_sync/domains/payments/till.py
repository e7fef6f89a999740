"""The till: what a terminal's payment screen calls. It checks the terminal's local view
before taking money (the balance, a live attempt), then writes the order's payment command
and the drawer movement in one local transaction, so they reach the server in one batch.

It works on anything shaped like :class:`fynlo_sync.client.Terminal` (``command``,
``get``, ``store.transaction()``), which it takes as an argument: the till adds no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from fynlo_sync.domains.payments.attempts import attempt_net
from fynlo_sync.domains.payments.drawers import DRAWERS
from fynlo_sync.domains.payments.states import LIVE_STATES
from fynlo_sync.errors import RejectedOpError
from fynlo_sync.ops import Op, Record

__all__ = ["Till", "TillTerminal"]


class _Transaction(Protocol):
    def __enter__(self) -> object: ...

    def __exit__(self, kind: Any, value: Any, traceback: Any, /) -> Any: ...


class _Store(Protocol):
    def transaction(self) -> _Transaction: ...


class TillTerminal(Protocol):
    @property
    def store(self) -> _Store: ...

    def command(
        self, collection: str, record_id: str, name: str, args: Mapping[str, Any] | None = None
    ) -> Op: ...

    def get(self, collection: str, record_id: str) -> Record | None: ...


class Till:
    """One terminal's payment screen over its cash drawer ``drawer_id``.

    ``online`` says whether the terminal can reach the server now (the app knows); every
    command it writes carries it as ``offline``. ``new_id`` mints attempt and refund ids.
    """

    def __init__(
        self,
        terminal: TillTerminal,
        drawer_id: str,
        new_id: Callable[[], str],
        *,
        online: Callable[[], bool] = lambda: True,
    ) -> None:
        self.terminal = terminal
        self.drawer_id = drawer_id
        self.new_id = new_id
        self.online = online

    # ---------------------------------------------------------------------- drawer

    def open_drawer(self, float_: int, currency: str, employee: str | None = None) -> Op:
        return self.terminal.command(
            DRAWERS,
            self.drawer_id,
            "drawer_open",
            {"float": float_, "currency": currency, "employee": employee},
        )

    def move(
        self,
        kind: str,
        amount: int,
        reason: str | None = None,
        ref: str | None = None,
        *,
        payment: Mapping[str, str] | None = None,
    ) -> Op:
        """A drawer movement; a ``sale`` or ``refund`` names its ``payment`` (``order_id``,
        ``attempt_id``, ``refund_id``) so the server can check the order records it."""
        return self.terminal.command(
            DRAWERS,
            self.drawer_id,
            "drawer_move",
            {
                "movement_id": self.new_id(),
                "kind": kind,
                "amount": amount,
                "reason": reason,
                "ref": ref,
                **(payment or {}),
            },
        )

    def close_drawer(self, counted: int) -> Op:
        return self.terminal.command(DRAWERS, self.drawer_id, "drawer_close", {"counted": counted})

    # ---------------------------------------------------------------------- payments

    def _order(self, order_id: str) -> Mapping[str, Any]:
        order = self.terminal.get("orders", order_id)
        if order is None:
            raise RejectedOpError("no such order", reason="record-not-found")
        return order.fields

    def _check_new(self, order: Mapping[str, Any], amount: int) -> None:
        attempts = order.get("payments") or {}
        for key in sorted(attempts):
            if attempts[key]["state"] in LIVE_STATES:
                raise RejectedOpError(
                    f"attempt {key!r} is still live", reason="attempt-live", attempt_id=key
                )
        due = order.get("balance_due", order.get("total") or 0)
        if amount > due:
            raise RejectedOpError(
                f"the balance due is {due}", reason="amount-above-balance", balance_due=due
            )

    def take_cash(
        self,
        order_id: str,
        amount: int,
        tendered: int,
        *,
        tip: int = 0,
        employee: str | None = None,
        approved_by: str | None = None,
    ) -> str:
        """Take cash for ``amount`` (+ ``tip``); the drawer keeps ``amount + tip`` and hands
        back the change. Returns the attempt id."""
        self._check_new(self._order(order_id), amount)
        attempt_id = self.new_id()
        with self.terminal.store.transaction():
            self.terminal.command(
                "orders",
                order_id,
                "payment_cash",
                {
                    "attempt_id": attempt_id,
                    "amount": amount,
                    "tip": tip,
                    "tendered": tendered,
                    "offline": not self.online(),
                    "employee": employee,
                    "approved_by": approved_by,
                },
            )
            payment = {"order_id": order_id, "attempt_id": attempt_id}
            self.move("sale", amount + tip, ref=f"{order_id}/{attempt_id}", payment=payment)
        return attempt_id

    def start(
        self,
        order_id: str,
        method: str,
        amount: int,
        *,
        tip: int = 0,
        employee: str | None = None,
    ) -> str:
        """Start a card, open banking or Apple Pay attempt (refused at once offline)."""
        self._check_new(self._order(order_id), amount)
        attempt_id = self.new_id()
        self.terminal.command(
            "orders",
            order_id,
            "payment_start",
            {
                "attempt_id": attempt_id,
                "method": method,
                "amount": amount,
                "tip": tip,
                "offline": not self.online(),
                "employee": employee,
            },
        )
        return attempt_id

    def refund(
        self, order_id: str, attempt_id: str, amount: int, *, approved_by: str | None = None
    ) -> str:
        """Refund to the original method; a cash refund comes out of this drawer."""
        attempt = (self._order(order_id).get("payments") or {}).get(attempt_id)
        refund_id = self.new_id()
        with self.terminal.store.transaction():
            self.terminal.command(
                "orders",
                order_id,
                "payment_refund",
                {
                    "attempt_id": attempt_id,
                    "refund_id": refund_id,
                    "amount": amount,
                    "offline": not self.online(),
                    "approved_by": approved_by,
                },
            )
            if attempt is not None and attempt["method"] == "cash":
                self.move(
                    "refund",
                    amount,
                    ref=f"{order_id}/{attempt_id}/{refund_id}",
                    payment={
                        "order_id": order_id,
                        "attempt_id": attempt_id,
                        "refund_id": refund_id,
                    },
                )
        return refund_id

    def void(self, order_id: str, attempt_id: str, *, approved_by: str | None = None) -> Op:
        return self.terminal.command(
            "orders",
            order_id,
            "payment_cancel",
            {
                "attempt_id": attempt_id,
                "reason": "void",
                "offline": not self.online(),
                "approved_by": approved_by,
            },
        )

    def refundable(self, order_id: str, attempt_id: str) -> int:
        attempt = (self._order(order_id).get("payments") or {}).get(attempt_id)
        return 0 if attempt is None else attempt_net(attempt)
