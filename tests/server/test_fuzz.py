"""A hypothesis fuzzer for push bodies against a real server (embedded SQLite): whatever a
device sends, the answer is 200 or a typed 4xx problem (never 5xx, never another media
type), and the tenant keeps syncing afterwards. ``FYNLO_FUZZ_EXAMPLES`` sets the count."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fynlo_sync.canonical import checksum
from fynlo_sync.ops import Batch
from server.testing import embedded_settings, run_in_thread
from tests.core.conftest import make_registry
from tests.server.conftest import Live, auth, note_op

EXAMPLES = int(os.environ.get("FYNLO_FUZZ_EXAMPLES", "150"))  # the Show: 300
COUNTS = {"cases": 0, "5xx": 0, "not_problem": 0}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["\x00", "a\x00", "", "_x", "ffffffffffff0000", "[" * 80]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def bodies(draw: st.DrawFn, node: str) -> bytes:
    """A push body: a valid batch with some members replaced, removed or added."""
    ops: list[dict[str, Any]] = [
        msgspec.to_builtins(note_op(node, seq, record=f"r{seq % 3}")) for seq in (1, 2, 3)
    ]
    for op in ops:
        for member in draw(st.lists(st.sampled_from(sorted(op)), max_size=3, unique=True)):
            choice = draw(st.integers(0, 2))
            if choice == 0:
                del op[member]
            else:
                op[member] = draw(values)
        if draw(st.booleans()):
            op[draw(st.text(max_size=6))] = draw(values)
    body: dict[str, Any] = {"protocol": 1, "node_id": node, "ops": ops}
    try:
        body["checksum"] = checksum(ops) if draw(st.booleans()) else draw(st.text(max_size=32))
    except Exception:  # a float or an out-of-range integer: no checksum can be computed
        body["checksum"] = "0" * 32
    for member in draw(st.lists(st.sampled_from(["protocol", "node_id", "ops"]), max_size=1)):
        body[member] = draw(values)
    text = json.dumps(body, allow_nan=False)
    if draw(st.integers(0, 9)) == 0:  # now and then, bytes that are not JSON at all
        cut = draw(st.integers(0, len(text)))
        return text[:cut].encode()
    return text.encode()


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    settings = embedded_settings(tmp_path_factory.mktemp("fuzz"))
    with run_in_thread(settings, registry=make_registry()) as url:
        live = Live(url, settings, "sqlite")
        yield live
        for link in live.links:
            link.close()


def test_push_fuzzer_finds_no_server_error(fuzz_server: Live, tmp_path: Path) -> None:
    tenant = fuzz_server.tenant()
    link = fuzz_server.device(tenant)
    client = httpx.Client(base_url=fuzz_server.url, headers=auth(link), timeout=20)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
    )
    @given(body=bodies(link.node_id))
    def one(body: bytes) -> None:
        try:
            answer = client.post("/v1/sync/push", content=body)
        except httpx.RemoteProtocolError:  # a keep-alive connection the server had closed
            answer = client.post("/v1/sync/push", content=body)
        COUNTS["cases"] += 1
        if answer.status_code >= 500:
            COUNTS["5xx"] += 1
        if answer.status_code != 200 and not answer.headers.get("content-type", "").startswith(
            "application/problem+json"
        ):
            COUNTS["not_problem"] += 1
        assert answer.status_code < 500, answer.text
        if answer.status_code != 200:
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["type"].startswith("https://fynlo.dev/problems/")

    try:
        one()
        # The tenant still syncs: a pull answers, and a fresh device pushes and pulls.
        assert client.get("/v1/sync/pull").status_code == 200
        other = fuzz_server.device(tenant)
        batch = Batch.of(other.node_id, [note_op(other.node_id, 1, record="z")])
        assert other.push(batch).high_water == 1
        assert other.pull(0, 1000).cursor >= 1
    finally:
        client.close()
    print(
        f"\npush fuzzer: {COUNTS['cases']} cases, 5xx: {COUNTS['5xx']}, "
        f"non-problem errors: {COUNTS['not_problem']}"
    )
    assert COUNTS["5xx"] == 0 and COUNTS["not_problem"] == 0
