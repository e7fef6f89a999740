"""The time clock's routes (protocol 20.8): approvals and proposals over HTTP, under
``/v1/plugins/timeclock`` (the timeclock plugin's ``server_module``; a device's access
token required, like every ``/v1`` route).

A route acts for the employee the device names as ``actor`` (as an op's ``actor``, 20.1):
the permission is checked before anything is written (403 ``forbidden`` naming it), and
the command is then authored by the server *with that actor*, so the engine checks it again
under the tenant's lock and the op log keeps who decided (``fynlo audit --actor``).

* ``GET /approvals?actor=E[&state=to_approve|all][&week=YYYY-MM-DD][&employee_id=X]``
  (``timeclock.approve``): the adjustments and the days of overtime to decide.
* ``POST /timecards/{timecard_id}/adjustments`` ``{"actor", "adjustment_id", "punches",
  "note"}`` (``timeclock.punch``): propose an adjustment.
* ``POST /timecards/{timecard_id}/adjustments/{adjustment_id}/decision`` ``{"actor",
  "decision"}`` (``timeclock.approve``): approve (apply) or refuse it.
* ``POST /timecards/{timecard_id}/days/{day}/decision`` ``{"actor", "decision"}``
  (``timeclock.approve``): approve or refuse a workday's overtime.

A command's refusal is a problem whose ``type`` is its reason: 404 ``record-not-found`` /
``adjustment-not-found``, 409 ``illegal-transition`` / ``adjustment-stale`` /
``duplicate-adjustment`` / ``nothing-to-approve``, 403 ``forbidden``, else 422.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

import msgspec
from litestar import Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from fynlo_sync.domains.timeclock.plugin import PERMISSIONS, TIMECARDS
from fynlo_sync.errors import CallerError, ForbiddenError
from fynlo_sync.plugins import Draft
from server.auth import AccessToken, Device
from server.permissions import require_permission
from server.plugins import PluginContext

__all__ = ["ROUTES", "Adjustment", "ApprovalList", "Decided", "OvertimeDay"]

DeviceRequest = Request[Device, AccessToken, Any]
Ident = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern="^[^\\x00]+$")]

#: HTTP status of a command's refusal, by reason (others: 422).
STATUS = {
    "forbidden": 403,
    "record-not-found": 404,
    "adjustment-not-found": 404,
    "illegal-transition": 409,
    "adjustment-stale": 409,
    "duplicate-adjustment": 409,
    "nothing-to-approve": 409,
}
_ERRORS: dict[str, type[CallerError]] = {}


def refusal(reason: str, detail: str, **extra: Any) -> CallerError:
    """The problem for a command's refusal: its ``type`` is the reason."""
    if reason == "forbidden":
        return ForbiddenError(detail, **extra)
    cls = _ERRORS.get(reason)
    if cls is None:
        name = "".join(part.title() for part in reason.split("-")) + "Error"
        cls = cast(
            "type[CallerError]",
            type(name, (CallerError,), {"code": reason, "status": STATUS.get(reason, 422)}),
        )
        _ERRORS[reason] = cls
    return cls(detail, **extra)


class Adjustment(msgspec.Struct, frozen=True):
    timecard_id: str
    employee_id: str
    week: str
    adjustment_id: str
    state: str
    proposed_by: str | None
    note: str | None
    before: dict[str, Any]
    after: dict[str, Any]
    decided_by: str | None


class OvertimeDay(msgspec.Struct, frozen=True):
    timecard_id: str
    employee_id: str
    week: str
    day: int
    overtime_ms: int
    double_ms: int
    approval: str


class ApprovalList(msgspec.Struct, frozen=True):
    adjustments: list[Adjustment]
    overtime: list[OvertimeDay]


class Decision(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    actor: Ident
    decision: Literal["approve", "refuse"]


class Proposal(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    actor: Ident
    adjustment_id: Ident
    punches: Annotated[dict[str, Any], msgspec.Meta(min_length=1, max_length=100)]
    note: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class Decided(msgspec.Struct, frozen=True):
    timecard_id: str
    op_id: str
    state: str


def _timecard_id(raw: str) -> str:
    if not raw or len(raw) > 128 or "\x00" in raw:
        raise refusal("record-not-found", f"no timecard {raw!r}", timecard_id=raw)
    return raw


async def _run(
    plugin: PluginContext,
    tenant: str,
    timecard_id: str,
    name: str,
    args: dict[str, Any],
    actor: str,
) -> tuple[str, dict[str, Any]]:
    """Author one timecards command for ``actor``; the op id and the timecard after it."""
    await require_permission(plugin.backend, tenant, actor, PERMISSIONS[name])
    result = await plugin.author(
        tenant, [Draft.command(TIMECARDS, timecard_id, name, args, actor=actor)]
    )
    outcome = result.outcomes[0]
    if outcome.status == "rejected":
        reason = outcome.reason or "rejected"
        extra: dict[str, Any] = {"permission": PERMISSIONS[name]} if reason == "forbidden" else {}
        raise refusal(reason, outcome.detail or reason, **extra)
    rows = await plugin.backend.load(tenant, [(TIMECARDS, timecard_id)])
    return outcome.op_id, dict(rows[(TIMECARDS, timecard_id)].fields)


@get("/approvals", tags=["timeclock"])
async def approvals(
    request: DeviceRequest,
    plugin: NamedDependency[PluginContext],
    actor: Annotated[
        str, QueryParameter(min_length=1, max_length=128, description="the employee asking")
    ],
    which: Annotated[
        Literal["to_approve", "all"],
        QueryParameter(name="state", description="to_approve (default) or all"),
    ] = "to_approve",
    week: Annotated[
        str | None,
        QueryParameter(pattern=r"^\d{4}-\d{2}-\d{2}$", description="a workweek's Monday"),
    ] = None,
    employee_id: Annotated[str | None, QueryParameter(max_length=128)] = None,
) -> ApprovalList:
    """Adjustments and days of overtime to approve (``timeclock.approve``)."""
    tenant = request.user.tenant_id
    await require_permission(plugin.backend, tenant, actor, "timeclock.approve")
    adjustments: list[Adjustment] = []
    overtime: list[OvertimeDay] = []
    for record in await plugin.backend.records(tenant, TIMECARDS):
        f = record.fields
        if record.deleted or (week is not None and f.get("week") != week):
            continue
        if employee_id is not None and f.get("employee_id") != employee_id:
            continue
        base = {"timecard_id": record.record_id, "employee_id": f["employee_id"], "week": f["week"]}
        for adjustment_id in sorted(f.get("adjustments") or {}):
            a = f["adjustments"][adjustment_id]
            if which == "all" or a["state"] == "to_approve":
                adjustments.append(
                    Adjustment(
                        **base,
                        adjustment_id=adjustment_id,
                        state=a["state"],
                        proposed_by=a.get("proposed_by"),
                        note=a.get("note"),
                        before=a.get("before") or {},
                        after=a.get("after") or {},
                        decided_by=a.get("decided_by"),
                    )
                )
        for day, summary in enumerate(f.get("days") or []):
            approval = summary.get("approval")
            if approval is not None and (which == "all" or approval == "to_approve"):
                overtime.append(
                    OvertimeDay(
                        **base,
                        day=day,
                        overtime_ms=summary["overtime_ms"],
                        double_ms=summary["double_ms"],
                        approval=approval,
                    )
                )
    return ApprovalList(adjustments, overtime)


@post("/timecards/{timecard_id:str}/adjustments", status_code=201, tags=["timeclock"])
async def propose(
    request: DeviceRequest,
    plugin: NamedDependency[PluginContext],
    timecard_id: FromPath[str],
    data: JSONBody[Proposal],
) -> Decided:
    """Propose an adjustment: punch id -> corrected punch, or null to remove it."""
    card = _timecard_id(timecard_id)
    args = {"adjustment_id": data.adjustment_id, "punches": data.punches, "note": data.note}
    op_id, fields = await _run(plugin, request.user.tenant_id, card, "propose", args, data.actor)
    return Decided(card, op_id, fields["adjustments"][data.adjustment_id]["state"])


@post(
    "/timecards/{timecard_id:str}/adjustments/{adjustment_id:str}/decision",
    status_code=200,
    tags=["timeclock"],
)
async def decide(
    request: DeviceRequest,
    plugin: NamedDependency[PluginContext],
    timecard_id: FromPath[str],
    adjustment_id: FromPath[str],
    data: JSONBody[Decision],
) -> Decided:
    """Approve (apply) or refuse a proposed adjustment (``timeclock.approve``)."""
    card = _timecard_id(timecard_id)
    args = {"adjustment_id": adjustment_id, "decision": data.decision}
    op_id, fields = await _run(plugin, request.user.tenant_id, card, "decide", args, data.actor)
    return Decided(card, op_id, fields["adjustments"][adjustment_id]["state"])


@post("/timecards/{timecard_id:str}/days/{day:int}/decision", status_code=200, tags=["timeclock"])
async def decide_day(
    request: DeviceRequest,
    plugin: NamedDependency[PluginContext],
    timecard_id: FromPath[str],
    day: FromPath[int],
    data: JSONBody[Decision],
) -> Decided:
    """Approve or refuse a workday's overtime, for the amount it has now."""
    card = _timecard_id(timecard_id)
    if not 0 <= day <= 6:
        raise refusal("invalid-argument", "day is 0 (Monday) .. 6", argument="day")
    args = {"day": day, "decision": data.decision}
    op_id, fields = await _run(
        plugin, request.user.tenant_id, card, "approve_day", args, data.actor
    )
    return Decided(card, op_id, fields["approvals"][str(day)]["state"])


ROUTES = [approvals, propose, decide, decide_day]
