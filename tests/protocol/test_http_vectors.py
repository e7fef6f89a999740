"""Every push.json vector against the real server over HTTP (Litestar, embedded SQLite, a
real socket): the vectors describe what a terminal sees on the wire, not only what the
in-process replica does."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import admin
from server.testing import embedded_settings, run_in_thread
from tests.protocol.vectors import load, normative, registry_for

PUSH = load("push.json")
PUSH_LIKE = PUSH + load("compact.json")
#: Extension members of `malformed` are diagnostics (docs/protocol.md section 16): the HTTP
#: layer reports a bad query parameter as `errors`, the replica as `field`.
DIAGNOSTIC = "https://fynlo.dev/problems/malformed"


class Server:
    def __init__(self, url: str, settings: Any) -> None:
        self.url = url
        self.settings = settings

    def tokens(self, tenant: str, node_id: str) -> str:
        code = admin.enroll_device(self.settings, tenant, node_id).enrollment_code
        answer = httpx.post(
            self.url + "/v1/auth/device", json={"enrollment_code": code}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["access_token"]
        return token


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """One server per batch limit the vectors use, serving the vectors' collections."""
    schemas = PUSH[0]["collections"]
    assert all(v["collections"] == schemas for v in PUSH)
    limits = sorted({_options(v) for v in PUSH_LIKE})
    out: dict[str, Server] = {}
    with _serving(tmp_path_factory, schemas, limits, out):
        yield out


def _options(vector: dict[str, Any]) -> str:
    """The server options a vector needs, as a key (one server per distinct set)."""
    return json.dumps(
        {"max_batch": vector.get("max_batch", 1000), "limits": vector.get("limits", {})},
        sort_keys=True,
    )


class _serving:
    """Start a server per limit (nested context managers, closed in reverse)."""

    def __init__(
        self,
        factory: pytest.TempPathFactory,
        schemas: list[dict[str, Any]],
        limits: list[str],
        out: dict[str, Server],
    ) -> None:
        self.factory, self.schemas, self.limits, self.out = factory, schemas, limits, out
        self.stack: list[Any] = []

    def __enter__(self) -> None:
        for limit in self.limits:
            options = json.loads(limit)
            settings = embedded_settings(
                self.factory.mktemp("http"),
                max_batch=options.get("max_batch", 1000),
                **options.get("limits", {}),
            )
            ctx = run_in_thread(settings, registry=registry_for(self.schemas))
            url = ctx.__enter__()
            self.stack.append(ctx)
            self.out[limit] = Server(url, settings)

    def __exit__(self, *exc: object) -> None:
        for ctx in reversed(self.stack):
            ctx.__exit__(None, None, None)


def _compare(step: dict[str, Any], status: int, body: Any) -> None:
    expected = step["expect"]
    assert status == expected["status"], body
    if status == 200:
        assert normative({"body": body}) == {"body": expected["body"]}
        return
    problem = normative({"problem": body})["problem"]
    if problem["type"] == DIAGNOSTIC:
        problem = {k: problem[k] for k in ("type", "status")}
        assert problem == {k: expected["problem"][k] for k in ("type", "status")}
    else:
        assert problem == expected["problem"]


@pytest.mark.parametrize("vector", PUSH_LIKE, ids=[v["name"] for v in PUSH_LIKE])
def test_push_vector_over_http(vector: dict[str, Any], servers: dict[str, Server]) -> None:
    server = servers[_options(vector)]
    tenant = admin.create_tenant(server.settings, "vectors", "t" + secrets.token_hex(6))
    tokens: dict[str, str] = {}

    def bearer(node: str) -> dict[str, str]:
        if node not in tokens:
            tokens[node] = server.tokens(tenant, node)
        return {"Authorization": f"Bearer {tokens[node]}"}

    # Any device of the tenant may pull: reuse the first pusher (enrolling costs an argon2 hash).
    pushers = [step["push"]["node_id"] for step in vector["steps"] if "push" in step]
    reader = pushers[0] if pushers else "reader"
    client = httpx.Client(base_url=server.url, timeout=10)
    for step in vector["steps"]:
        if "push" in step:
            push = step["push"]
            body = (
                push["body_text"].encode("utf-8")
                if "body_text" in push
                else json.dumps(push["body"]).encode("utf-8")
            )
            headers = {**bearer(push["node_id"]), "Content-Type": "application/json"}
            answer = client.post("/v1/sync/push", content=body, headers=headers)
        else:
            pull = step["pull"]
            params = {"cursor": pull["cursor"], "limit": pull["limit"]}
            if pull.get("compact"):
                params["compact"] = 1
            who = pull.get("node_id", reader)
            answer = client.get("/v1/sync/pull", params=params, headers=bearer(who))
        if answer.status_code != 200:
            assert answer.headers["content-type"].startswith("application/problem+json")
        _compare(step, answer.status_code, answer.json())
    client.close()


def test_requests_without_a_token_get_the_unauthenticated_problem(
    servers: dict[str, Server], tmp_path: Path
) -> None:
    server = servers[_options({})]
    answer = httpx.get(server.url + "/v1/sync/pull", params={"cursor": 0})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["type"] == "https://fynlo.dev/problems/unauthenticated"
