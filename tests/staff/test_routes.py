"""The time clock's approval routes, conflict resolution's permission and the fraud checks
against one real server over a socket (shared by the module: one server start).

The server runs with an IP allow-list (10.0.0.0/8, deny) and a flagging geofence, so a
punch pushed online from 127.0.0.1 is refused by the address the route passed down, and
punches made offline are kept, marked ``network-unchecked``."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Op
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.app import registry_from
from server.staff import add_employee, audit, run_admin
from server.testing import embedded_settings, run_in_thread
from tests.staff.conftest import at, card, card_args

PLUGINS = (
    "fynlo_sync.domains.orders:OrdersPlugin",
    "fynlo_sync.domains.staff:StaffPlugin",
    "fynlo_sync.domains.timeclock:TimeclockPlugin",
    "tests.core.conftest:NotesPlugin",
)
ENV = {
    "FYNLO_TIMECLOCK_IP_ALLOW": "10.0.0.0/8",
    "FYNLO_TIMECLOCK_IP_POLICY": "deny",
    "FYNLO_TIMECLOCK_VENUE_LAT_E6": "51508039",
    "FYNLO_TIMECLOCK_VENUE_LON_E6": "-128069",
    "FYNLO_TIMECLOCK_GEOFENCE_POLICY": "flag",
}
ROLES = {"o1": "owner", "m1": "manager", "m2": "manager", "v1": "supervisor", "s1": "staff"}
BASE = "/v1/plugins/timeclock"


class Served:
    def __init__(self, settings: Any, url: str, clock: ManualClock) -> None:
        self.settings, self.url, self.clock = settings, url, clock
        self.links: dict[str, HttpTransport] = {}
        self.seqs: dict[str, int] = {}

    def link(self, node: str) -> HttpTransport:
        if node not in self.links:
            code = admin.enroll_device(self.settings, "t1", node).enrollment_code
            self.links[node] = HttpTransport.enroll(self.url, code)
            self.seqs[node] = 0
        return self.links[node]

    def call(self, method: str, path: str, node: str = "till-1", **kwargs: Any) -> httpx.Response:
        link = self.link(node)
        assert link.tokens is not None
        headers = {"Authorization": f"Bearer {link.tokens.access_token}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def push(self, node: str, **op: Any) -> Any:
        link = self.link(node)
        self.seqs[node] += 1
        seq = self.seqs[node]
        full = Op(
            op_id=f"{node}-{seq}",
            node_id=link.tokens.node_id if link.tokens else node,
            seq=seq,
            hlc=to_wire(pack(self.clock() - 60_000 + seq, 0)),
            base_seq=0,
            **op,
        )
        return link.push(Batch.of(full.node_id, [full])).outcomes[0]

    def punch(self, node: str, punch_id: str, kind: str, when: int, **extra: Any) -> Any:
        args = {**card_args("s1"), "punch_id": punch_id, "kind": kind, "at_ms": when, **extra}
        return self.push(
            node,
            collection="timecards",
            record_id=card("s1"),
            kind="command",
            name="punch",
            args=args,
            actor="s1",
        )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder: Path = tmp_path_factory.mktemp("routes")
    settings = embedded_settings(folder, plugins=PLUGINS)
    # Tuesday of the test week, noon: punches of Monday were made offline.
    clock = ManualClock(start_ms=at(1, 8))
    admin.create_tenant(settings, "Cafe", "t1")
    for employee, role in ROLES.items():
        run_admin(
            settings,
            partial(add_employee, tenant="t1", employee_id=employee, name=employee, role=role),
        )
    registry = registry_from(settings, ENV)
    with run_in_thread(settings, registry=registry, wall=clock) as url:
        yield Served(settings, url, clock)


def _timecard(served: Served) -> dict[str, Any]:
    rows = served.call("GET", "/v1/sync/pull", params={"cursor": 0}).json()
    found = [c for c in rows["changes"] if c["record"]["record_id"] == card("s1")]
    return dict(found[-1]["record"]["fields"])


def test_fraud_checks_see_the_real_client_address(served: Served) -> None:
    online = served.punch("till-1", "now", "clock_in", served.clock() - 1000)
    assert (online.status, online.reason) == ("rejected", "outside-network")
    # Monday's shift, made offline: the network cannot be checked, so it is marked.
    assert served.punch("till-1", "p1", "clock_in", at(0, 1)).status == "applied"
    far = {"lat_e6": 51_517_000, "lon_e6": -128_069}
    assert served.punch("till-2", "p2", "clock_out", at(0, 11), location=far).status == "applied"
    punches = _timecard(served)["punches"]
    assert punches["p1"]["checks"] == ["network-unchecked", "no-location"]
    assert punches["p2"]["checks"] == ["network-unchecked", "outside-geofence"]
    assert punches["p2"]["distance_m"] == 996
    assert "now" not in punches


def test_approvals_list_and_decide_with_the_permission_checked(served: Served) -> None:
    if "p1" not in _timecard(served)["punches"]:
        test_fraud_checks_see_the_real_client_address(served)
    path = f"{BASE}/timecards/{card('s1')}"
    proposal = {
        "actor": "s1",
        "adjustment_id": "a1",
        "punches": {"p2": {"kind": "clock_out", "at_ms": at(0, 12)}},
        "note": "forgot to clock out",
    }
    made = served.call("POST", f"{path}/adjustments", json=proposal)
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "to_approve"
    again = served.call("POST", f"{path}/adjustments", json=proposal)
    assert (again.status_code, again.json()["type"].rsplit("/", 1)[1]) == (
        409,
        "duplicate-adjustment",
    )

    # listing needs timeclock.approve: staff get 403 naming it
    denied = served.call("GET", f"{BASE}/approvals", params={"actor": "s1"})
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert denied.json()["permission"] == "timeclock.approve"
    listed = served.call("GET", f"{BASE}/approvals", params={"actor": "m1"}).json()
    assert [a["adjustment_id"] for a in listed["adjustments"]] == ["a1"]
    assert listed["adjustments"][0]["after"]["p2"]["at_ms"] == at(0, 12)
    # 10 h on Monday under us-ca: 2 h of daily overtime to approve
    assert [(d["day"], d["overtime_ms"]) for d in listed["overtime"]] == [(0, 2 * 3_600_000)]

    decision = f"{path}/adjustments/a1/decision"
    staff = served.call("POST", decision, json={"actor": "s1", "decision": "approve"})
    assert (staff.status_code, staff.json()["permission"]) == (403, "timeclock.approve")
    unknown = served.call("POST", decision, json={"actor": "ghost", "decision": "approve"})
    assert unknown.status_code == 403
    ok = served.call("POST", decision, json={"actor": "m1", "decision": "approve"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["state"] == "approved"
    twice = served.call("POST", decision, json={"actor": "m2", "decision": "refuse"})
    assert (twice.status_code, twice.json()["type"].rsplit("/", 1)[1]) == (
        409,
        "illegal-transition",
    )
    fields = _timecard(served)
    assert fields["adjustments"]["a1"]["decided_by"] == "m1"
    assert fields["punches"]["p2"]["at_ms"] == at(0, 12)

    # now 11 h: 3 h of overtime, decided by a manager
    day = served.call(
        "POST", f"{path}/days/0/decision", json={"actor": "m2", "decision": "approve"}
    )
    assert (day.status_code, day.json()["state"]) == (200, "approved")
    left = served.call("GET", f"{BASE}/approvals", params={"actor": "m1"}).json()
    assert left == {"adjustments": [], "overtime": []}
    every = served.call("GET", f"{BASE}/approvals", params={"actor": "m1", "state": "all"}).json()
    assert [d["approval"] for d in every["overtime"]] == ["approved"]

    log = run_admin(served.settings, lambda b: audit(b, "t1", "m1"))
    assert any(e["status"] == "applied" and e["record_id"] == card("s1") for e in log)


@pytest.mark.parametrize(
    ("path", "body", "status", "problem"),
    [
        (
            "/adjustments/nope/decision",
            {"actor": "m1", "decision": "approve"},
            404,
            "adjustment-not-found",
        ),
        ("/adjustments/a1/decision", {"actor": "m1", "decision": "maybe"}, 422, "malformed"),
        ("/adjustments/a1/decision", {"actor": "m1"}, 422, "malformed"),
        (
            "/adjustments/a1/decision",
            {"actor": "m1", "decision": "approve", "x": 1},
            422,
            "malformed",
        ),
        ("/days/9/decision", {"actor": "m1", "decision": "approve"}, 422, "invalid-argument"),
        ("/days/3/decision", {"actor": "m1", "decision": "approve"}, 409, "nothing-to-approve"),
        ("/adjustments", {"actor": "s1", "adjustment_id": "a9", "punches": {}}, 422, "malformed"),
    ],
)
def test_bad_input_gets_a_problem_naming_it(
    served: Served, path: str, body: dict[str, Any], status: int, problem: str | None
) -> None:
    if "p1" not in _timecard(served)["punches"]:
        test_fraud_checks_see_the_real_client_address(served)
    got = served.call("POST", f"{BASE}/timecards/{card('s1')}{path}", json=body)
    assert got.status_code == status, got.text
    assert got.headers["content-type"].startswith("application/problem+json")
    if problem is not None:
        assert got.json()["type"].rsplit("/", 1)[1] == problem


def test_an_unknown_timecard_is_404(served: Served) -> None:
    got = served.call(
        "POST",
        f"{BASE}/timecards/nobody.2026-11-30/adjustments/a1/decision",
        json={"actor": "m1", "decision": "approve"},
    )
    assert (got.status_code, got.json()["type"].rsplit("/", 1)[1]) == (404, "record-not-found")


def test_the_routes_are_in_the_openapi_document(served: Served) -> None:
    doc = served.call("GET", "/schema/openapi.json").json()
    for path in (
        f"{BASE}/approvals",
        f"{BASE}/timecards/{{timecard_id}}/adjustments",
        f"{BASE}/timecards/{{timecard_id}}/adjustments/{{adjustment_id}}/decision",
        f"{BASE}/timecards/{{timecard_id}}/days/{{day}}/decision",
    ):
        assert path in doc["paths"], sorted(doc["paths"])


# --------------------------------------------------------- conflict.resolve (20.1)


def _park(served: Served, record: str) -> str:
    """Two tills race on a notes_manual record: the second write is parked."""
    for node, title in (("bar-1", "first"), ("bar-2", "second")):
        served.push(
            node,
            collection="notes_manual",
            record_id=record,
            kind="put",
            fields={"title": title},
        )
    listed = served.call("GET", "/v1/conflicts").json()["conflicts"]
    ids = [c["record_id"] for c in listed if c["fields"]["record_id"] == record]
    assert len(ids) == 1
    return str(ids[0])


def test_resolving_a_conflict_needs_conflict_resolve(served: Served) -> None:
    conflict_id = _park(served, "n1")
    path = f"/v1/conflicts/{conflict_id}/resolve"
    for body in ({"choice": "incoming"}, {"choice": "incoming", "actor": "s1"}):
        got = served.call("POST", path, json=body)
        assert got.status_code == 403, got.text
        assert got.json()["permission"] == "conflict.resolve"
    # nothing was applied: the record still holds the first write, the conflict is open
    pulled = served.call("GET", "/v1/sync/pull", params={"cursor": 0}).json()["changes"]
    note = [c for c in pulled if c["record"]["record_id"] == "n1"][-1]["record"]["fields"]
    assert note["title"] == "first"
    ok = served.call("POST", path, json={"choice": "incoming", "actor": "v1"})
    assert ok.status_code == 200, ok.text
    assert [o["status"] for o in ok.json()["outcomes"]] == ["applied", "applied"]
    log = run_admin(served.settings, lambda b: audit(b, "t1", "v1"))
    assert [e["collection"] for e in log] == ["conflicts"]


def test_a_resolve_command_from_a_terminal_needs_conflict_resolve(served: Served) -> None:
    conflict_id = _park(served, "n2")
    args = {"resolution_op_id": None}
    common = {"collection": "conflicts", "record_id": conflict_id, "kind": "command"}
    staff = served.push("till-3", **common, name="resolve", args=args, actor="s1")
    assert (staff.status, staff.reason) == ("rejected", "forbidden")
    assert "conflict.resolve" in (staff.detail or "")
    nobody = served.push("till-3", **common, name="resolve", args=args)
    assert (nobody.status, nobody.reason) == ("rejected", "forbidden")
    ok = served.push("till-3", **common, name="resolve", args=args, actor="v1")
    assert ok.status == "applied"


@pytest.mark.parametrize(
    "params",
    [{}, {"actor": ""}, {"actor": "m1", "state": "bogus"}, {"actor": "m1", "week": "30/11/2026"}],
)
def test_bad_approval_queries_get_a_problem(served: Served, params: dict[str, str]) -> None:
    got = served.call("GET", f"{BASE}/approvals", params=params)
    assert got.status_code in (400, 422), got.text
    assert got.headers["content-type"].startswith("application/problem+json")
    assert got.json()["status"] == got.status_code
