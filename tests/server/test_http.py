"""The HTTP API over real sockets, against embedded SQLite and against PostgreSQL + Redis:
bad input, limits, replays, authentication, tenant isolation, the conflict queue, health."""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path
from typing import Any

import jwt
import msgspec
import pytest

from fynlo_sync.errors import (
    NodeMismatchError,
    SeqGapError,
    UnauthenticatedError,
)
from fynlo_sync.ops import Batch
from fynlo_sync.protocol import PullPage, PushResult, decode, encode_batch
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.http import HttpTransport, PokeListener
from server import admin
from tests.server.conftest import (
    MAX_BATCH,
    MAX_BODY,
    Live,
    auth,
    batch_of,
    note_op,
    raw,
    tokens_of,
)

PROBLEM = "https://fynlo.dev/problems/"


def problem(response: object, status: int, code: str) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["type"] == PROBLEM + code
    assert body["status"] == status
    return body


def pull_all(live: Live, link: HttpTransport) -> PullPage:
    return link.pull(0, 1000)


# ------------------------------------------------------------------------- bad input


def test_tampered_checksum_is_422_and_changes_nothing(live: Live) -> None:
    link = live.device(live.tenant())
    batch = batch_of(link.node_id, 1, 3)
    body = msgspec.json.decode(encode_batch(batch))
    body["ops"][1]["fields"]["title"] = "tampered"
    r = raw(live, "POST", "/v1/sync/push", link, content=json.dumps(body).encode())
    got = problem(r, 422, "checksum-mismatch")
    assert got["expected"] != batch.checksum
    page = pull_all(live, link)
    assert page.changes == [] and page.cursor == 0
    # The untampered batch still applies from seq 1: nothing moved the high-water mark.
    assert link.push(batch).high_water == 3


def test_gap_is_409_with_the_expected_seq(live: Live) -> None:
    link = live.device(live.tenant())
    link.push(batch_of(link.node_id, 1, 2))
    r = raw(live, "POST", "/v1/sync/push", link, content=encode_batch(batch_of(link.node_id, 5, 1)))
    assert problem(r, 409, "seq-gap")["expected"] == 3
    with pytest.raises(SeqGapError) as caught:
        link.push(batch_of(link.node_id, 4, 1))
    assert caught.value.extra["expected"] == 3
    assert pull_all(live, link).cursor == 2


def test_replayed_batch_gets_the_same_outcomes_and_applies_nothing_twice(live: Live) -> None:
    tenant = live.tenant()
    link = live.device(tenant)
    batch = Batch.of(
        link.node_id,
        [
            note_op(link.node_id, 1, record="a"),
            note_op(link.node_id, 2, record="b", kind="patch", title="no such record"),
            note_op(link.node_id, 3, record="a", title="again"),
        ],
    )
    first = link.push(batch)
    assert [o.status for o in first.outcomes] == ["applied", "rejected", "applied"]
    before = pull_all(live, link)
    again = link.push(batch)
    assert [o.status for o in again.outcomes] == ["duplicate"] * 3
    assert [o.original for o in again.outcomes] == [o.status for o in first.outcomes]
    assert [o.reason for o in again.outcomes] == [o.reason for o in first.outcomes]
    assert again.high_water == first.high_water == 3
    after = pull_all(live, link)
    assert after.changes == before.changes and len(after.changes) == 2
    # A replay overlapping new ops applies only the new ones.
    overlap = Batch.of(link.node_id, [*batch.ops[1:], note_op(link.node_id, 4, record="c")])
    mixed = link.push(overlap)
    assert [o.status for o in mixed.outcomes] == ["duplicate", "duplicate", "applied"]
    assert len(pull_all(live, link).changes) == 3


def test_too_many_ops_is_413(live: Live) -> None:
    link = live.device(live.tenant())
    r = raw(
        live,
        "POST",
        "/v1/sync/push",
        link,
        content=encode_batch(batch_of(link.node_id, 1, MAX_BATCH + 1)),
    )
    assert problem(r, 413, "batch-too-large")["limit"] == MAX_BATCH
    assert pull_all(live, link).cursor == 0


def test_oversize_body_is_413(live: Live) -> None:
    link = live.device(live.tenant())
    big = batch_of(link.node_id, 1, 2, title="x" * MAX_BODY)
    r = raw(live, "POST", "/v1/sync/push", link, content=encode_batch(big))
    assert problem(r, 413, "batch-too-large")["max_bytes"] == MAX_BODY
    assert pull_all(live, link).cursor == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 422, "malformed"),
        (b"[]", 422, "malformed"),
        (b'{"protocol": 2, "node_id": "x", "ops": [], "checksum": ""}', 400, "protocol-version"),
        (b'{"protocol": 1, "ops": [{"x": 1.5}], "checksum": "0"}', 422, "invalid-value"),
    ],
)
def test_malformed_bodies(live: Live, body: bytes, status: int, code: str) -> None:
    link = live.device(live.tenant())
    problem(raw(live, "POST", "/v1/sync/push", link, content=body), status, code)


def test_bad_pull_parameters_are_422(live: Live) -> None:
    link = live.device(live.tenant())
    problem(raw(live, "GET", "/v1/sync/pull?cursor=-1", link), 422, "malformed")
    problem(raw(live, "GET", "/v1/sync/pull?cursor=abc", link), 422, "malformed")
    problem(raw(live, "GET", "/v1/sync/pull?limit=100000", link), 422, "malformed")


# ------------------------------------------------------------------- authentication


def test_requests_without_a_valid_token_are_401(live: Live) -> None:
    link = live.device(live.tenant())
    token = tokens_of(link).access_token
    for headers in (
        {},
        {"Authorization": "Bearer nonsense"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": f"Bearer {token[:-4]}AAAA"},
    ):
        r = raw(live, "GET", "/v1/sync/pull", headers=headers)
        problem(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"] == "Bearer"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert {"sub", "tid", "ep", "exp", "iat"} <= set(claims)
    key = live.settings.secret_key
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about the short key for HS512
        forged = _forgeries(claims, key)
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    forged.append(header + "." + token.split(".")[1] + ".")
    for bad in forged:
        problem(
            raw(live, "GET", "/v1/sync/pull", headers={"Authorization": f"Bearer {bad}"}),
            401,
            "unauthenticated",
        )
    assert raw(live, "GET", "/v1/sync/pull", link).status_code == 200


def _forgeries(claims: dict[str, Any], key: str) -> list[str]:
    return [
        jwt.encode(claims, key, algorithm="HS512"),  # right key, other algorithm
        jwt.encode({**claims, "exp": claims["iat"] - 10}, key, algorithm="HS256"),  # expired
        jwt.encode({k: v for k, v in claims.items() if k != "exp"}, key, algorithm="HS256"),
        jwt.encode({**claims, "tid": "other"}, "k" * 64, algorithm="HS256"),  # other key
    ]


def test_websocket_token_in_query_and_refusals(live: Live) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    link = live.device(live.tenant())
    ws_url = link.ws_url()
    with connect(f"{ws_url}?token={tokens_of(link).access_token}", proxy=None) as ws:
        assert json.loads(ws.recv(timeout=10)) == {"type": "poke", "cursor": 0}
    for url, headers in (
        (ws_url, {}),
        (f"{ws_url}?token=nonsense", {}),
        (ws_url, {"Authorization": "Bearer nonsense"}),
    ):
        with pytest.raises(InvalidStatus) as refused:
            connect(url, additional_headers=headers, proxy=None, open_timeout=10)
        assert refused.value.response.status_code == 403


def test_revocation_closes_the_poke_socket(live: Live) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    tenant = live.tenant()
    doomed, other = live.device(tenant), live.device(tenant)
    with connect(doomed.ws_url(), additional_headers=auth(doomed), proxy=None) as ws:
        assert json.loads(ws.recv(timeout=10))["cursor"] == 0
        admin.revoke_device(live.settings, tenant, doomed.node_id)
        other.push(batch_of(other.node_id, 1, 1))
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(3):  # a poke may still arrive before the once-a-second sweep
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_enrollment_code_is_single_use(live: Live) -> None:
    tenant = live.tenant()
    code = admin.enroll_device(live.settings, tenant).enrollment_code
    first = raw(live, "POST", "/v1/auth/device", json={"enrollment_code": code})
    assert first.status_code == 200
    body = first.json()
    assert set(body) == {
        "access_token",
        "refresh_token",
        "token_type",
        "expires_in",
        "node_id",
        "tenant_id",
    }
    assert body["tenant_id"] == tenant and body["token_type"] == "Bearer"
    problem(
        raw(live, "POST", "/v1/auth/device", json={"enrollment_code": code}), 401, "unauthenticated"
    )
    wrong = code.split(".")[0] + ".guessed"
    fresh = admin.enroll_device(live.settings, tenant).enrollment_code
    problem(
        raw(live, "POST", "/v1/auth/device", json={"enrollment_code": wrong}),
        401,
        "unauthenticated",
    )
    problem(raw(live, "POST", "/v1/auth/device", json={"code": fresh}), 422, "malformed")


def test_refresh_rotates_and_reuse_revokes_the_chain(live: Live) -> None:
    link = live.device(live.tenant())
    old = tokens_of(link)
    new = link.refresh()
    assert new.refresh_token != old.refresh_token
    assert link.pull(0, 10).cursor == 0  # the new access token works
    newer = link.refresh()  # the successor was used: no grace for `old` any more
    # The old refresh token is presented again: someone copied it. Both chains die.
    reuse = raw(live, "POST", "/v1/auth/refresh", json={"refresh_token": old.refresh_token})
    assert problem(reuse, 401, "unauthenticated")["reason"] == "refresh-token-reused"
    problem(
        raw(live, "POST", "/v1/auth/refresh", json={"refresh_token": newer.refresh_token}),
        401,
        "unauthenticated",
    )
    problem(raw(live, "GET", "/v1/sync/pull", link), 401, "unauthenticated")
    with pytest.raises(UnauthenticatedError):
        link.pull(0, 10)


def test_transport_refreshes_an_expired_access_token(live: Live) -> None:
    link = live.device(live.tenant())
    tokens = tokens_of(link)
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    stale = jwt.encode(
        {**claims, "exp": claims["iat"] - 1}, live.settings.secret_key, algorithm="HS256"
    )
    link.tokens = type(tokens)(
        stale, tokens.refresh_token, tokens.node_id, tokens.tenant_id, tokens.expires_in
    )
    assert link.push(batch_of(link.node_id, 1, 1)).high_water == 1
    assert tokens_of(link).refresh_token != tokens.refresh_token


def test_revoked_device_is_cut_off_at_once(live: Live) -> None:
    tenant = live.tenant()
    link = live.device(tenant)
    link.push(batch_of(link.node_id, 1, 1))
    admin.revoke_device(live.settings, tenant, link.node_id)
    problem(raw(live, "GET", "/v1/sync/pull", link), 401, "unauthenticated")
    refresh = {"refresh_token": tokens_of(link).refresh_token}
    problem(raw(live, "POST", "/v1/auth/refresh", json=refresh), 401, "unauthenticated")
    with pytest.raises(UnauthenticatedError):
        link.push(batch_of(link.node_id, 2, 1))


# ---------------------------------------------------------------- tenant isolation


def test_tenants_see_nothing_of_each_other(live: Live, tmp_path: Path) -> None:
    a_tenant, b_tenant = live.tenant(), live.tenant()
    a1, a2 = live.device(a_tenant), live.device(a_tenant)
    b = live.device(b_tenant)
    with PokeListener(b) as b_pokes, PokeListener(a2) as a_pokes:
        assert b_pokes.next(10) == 0 and a_pokes.next(10) == 0  # connected, cursor now
        # Tenant A: three changes and a parked conflict (notes_manual parks every race).
        a1.push(Batch.of(a1.node_id, [note_op(a1.node_id, s, record=f"r{s}") for s in (1, 2)]))
        a1.push(Batch.of(a1.node_id, [note_op(a1.node_id, 3, collection="notes_manual")]))
        a2.push(
            Batch.of(a2.node_id, [note_op(a2.node_id, 1, collection="notes_manual", title="b")])
        )
        assert a_pokes.next(10) is not None
        conflicts = a1.get("/v1/conflicts")["conflicts"]
        assert len(conflicts) == 1
        conflict_id = conflicts[0]["record_id"]
        # Tenant B's device: nothing from any endpoint.
        page = b.pull(0, 1000)
        assert page.changes == [] and page.cursor == 0
        assert b.get("/v1/conflicts", state="all")["conflicts"] == []
        r = raw(live, "POST", f"/v1/conflicts/{conflict_id}/resolve", b, json={"choice": "server"})
        problem(r, 404, "conflict-not-found")
        # B's own push: B's first poke after connecting is B's cursor 1, never A's 3 or 4.
        b.push(batch_of(b.node_id, 1, 1))
        assert b_pokes.next(10) == 1
    assert len(a1.pull(0, 1000).changes) == 4  # 3 records + the parked conflict


def test_a_device_cannot_push_as_another_node(live: Live) -> None:
    tenant = live.tenant()
    mine, other = live.device(tenant), live.device(tenant)
    theirs = batch_of(other.node_id, 1, 1)
    r = raw(live, "POST", "/v1/sync/push", mine, content=encode_batch(theirs))
    problem(r, 403, "node-mismatch")
    # An op of another node smuggled into my own batch is refused as well.
    smuggled = Batch.of(mine.node_id, [note_op(mine.node_id, 1), note_op(other.node_id, 2)])
    with pytest.raises(NodeMismatchError):
        mine.push(smuggled)
    assert mine.pull(0, 100).cursor == 0
    assert other.push(theirs).high_water == 1


# ------------------------------------------------------------------ conflict queue


def test_conflict_queue_over_http(live: Live, tmp_path: Path) -> None:
    tenant = live.tenant()
    clock = ManualClock(tick_ms=1)
    till, bar = (live.terminal(tenant, tmp_path, clock, seed) for seed in (1, 2))
    till.put("notes_manual", "n1", {"title": "first"})
    till.sync()
    bar.sync()
    till.patch("notes_manual", "n1", {"title": "till's"})
    bar.patch("notes_manual", "n1", {"title": "bar's"})
    till.sync()
    bar.sync()  # parked: both edited after seeing seq 1
    link = bar.transport
    assert isinstance(link, HttpTransport)
    listed = link.get("/v1/conflicts")["conflicts"]
    assert [c["fields"]["contested"] for c in listed] == [["title"]]
    result = decode(
        msgspec.json.encode(
            link.post(f"/v1/conflicts/{listed[0]['record_id']}/resolve", {"choice": "incoming"})
        ),
        PushResult,
    )
    assert [o.status for o in result.outcomes] == ["applied", "applied"]
    assert link.get("/v1/conflicts")["conflicts"] == []
    assert len(link.get("/v1/conflicts", state="resolved")["conflicts"]) == 1
    again = raw(
        live,
        "POST",
        f"/v1/conflicts/{listed[0]['record_id']}/resolve",
        link,
        json={"choice": "server"},
    )
    assert again.status_code == 200
    assert [o["status"] for o in again.json()["outcomes"]] == ["rejected"]
    till.sync()
    bar.sync()
    for terminal in (till, bar):
        record = terminal.get("notes_manual", "n1")
        assert record is not None and record.fields["title"] == "bar's"


# -------------------------------------------------------------------- operations


def test_health_metrics_and_schema(live: Live) -> None:
    assert raw(live, "GET", "/health/live").json() == {"status": "ok", "checks": {}}
    ready = raw(live, "GET", "/health/ready").json()
    assert ready["status"] == "ok"
    expected = {"database"} | ({"redis"} if live.kind == "postgres" else set())
    assert set(ready["checks"]) == expected
    link = live.device(live.tenant())
    link.pull(0, 10)
    metrics = raw(live, "GET", "/metrics").text
    assert 'path="/v1/sync/pull"' in metrics
    schema = raw(live, "GET", "/schema/openapi.json").json()
    for path in ("/v1/sync/push", "/v1/sync/pull", "/v1/auth/device", "/v1/conflicts"):
        assert path in schema["paths"]
    problem(raw(live, "GET", "/v1/nothing-here", link), 404, "not-found")
    assert auth(link)["Authorization"].startswith("Bearer ")
