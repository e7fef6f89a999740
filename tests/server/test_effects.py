"""Durable effects on the real server (embedded SQLite and PostgreSQL): the worker in the
lifespan performs them off the database worker, retries with backoff, dead-letters, and
ops an effect authors reach terminals through the feed; managers see dead effects at
``GET /v1/effects``; operators list and retry them with ``fynlo effects``."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

import conflict
from fynlo_sync.cli import main as fynlo
from fynlo_sync.effects import (
    SERVER_NODE,
    Effect,
    EffectContext,
    EffectHandler,
    PermanentEffectError,
    RetryableEffectError,
)
from fynlo_sync.errors import FynloError
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Change, Op
from fynlo_sync.plugins import Collection, DomainPlugin, Field, Registry
from fynlo_sync.transport.http import HttpTransport
from server import admin
from server.settings import Settings
from server.testing import embedded_settings, run_in_thread


class JobsPlugin(DomainPlugin):
    """A job calls for a ``run`` effect; its ``mode`` says how the handler behaves."""

    name = "jobs"
    threads: ClassVar[list[str]] = []

    def collections(self) -> Iterable[Collection]:
        fields = {"mode": Field("str"), "result": Field("str")}
        return (Collection("jobs", fields, strict=True),)

    def effects(self, changes: list[Change]) -> list[Effect]:
        return [
            Effect.of(c, self.name, "run", {"job": c.record.record_id})
            for c in changes
            if c.record.collection == "jobs" and c.node_id != SERVER_NODE
        ]

    def effect_handlers(self) -> Mapping[str, EffectHandler]:
        return {"run": self.run}

    async def run(self, ctx: EffectContext) -> None:
        self.threads.append(threading.current_thread().name)
        job = await ctx.read("jobs", ctx.effect.payload["job"])
        assert job is not None
        mode = job.fields["mode"]
        if mode == "fail":
            raise RetryableEffectError("the provider is down")
        if mode == "perm":
            raise PermanentEffectError("declined")
        ctx.author.patch("jobs", job.record_id, {"result": f"done by {ctx.key}"})


def job_op(node: str, seq: int, record: str, mode: str) -> Op:
    return Op(
        op_id=f"{node}-{seq}",
        node_id=node,
        seq=seq,
        hlc=to_wire(pack(1_700_000_000_000 + seq, 0)),
        base_seq=0,
        collection="jobs",
        record_id=record,
        kind="put",
        fields={"mode": mode},
    )


def registry() -> Registry:
    return conflict.registry([JobsPlugin()])


EFFECTS: dict[str, Any] = {"effect_max_failures": 2, "effect_backoff_ms": 1, "effect_poll_ms": 20}


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    if request.param == "sqlite":
        settings = embedded_settings(tmp_path, **EFFECTS)
    else:
        request.applymarker(pytest.mark.postgres)
        settings = Settings(
            database_url=request.getfixturevalue("postgres_url"),
            secret_key=secrets.token_urlsafe(32),
            **EFFECTS,
        )
    with run_in_thread(settings, registry=registry()) as url:
        yield url, settings


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_effects_run_retry_dead_letter_and_author_ops(
    served: tuple[str, Settings],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, settings = served
    tenant = admin.create_tenant(settings, "t", "t" + secrets.token_hex(4))
    link = HttpTransport.enroll(
        url, admin.enroll_device(settings, tenant, role="manager").enrollment_code
    )
    try:
        node = link.node_id
        ops = [
            job_op(node, 1, "j1", "ok"),
            job_op(node, 2, "j2", "fail"),
            job_op(node, 3, "j3", "perm"),
        ]
        result = link.push(Batch.of(node, ops))
        assert [o.status for o in result.outcomes] == ["applied"] * 3

        def effects(state: str | None = None) -> list[dict[str, Any]]:
            query = {} if state is None else {"state": state}
            rows: list[dict[str, Any]] = link.get("/v1/effects", **query)["effects"]
            return rows

        wait_for(
            lambda: [e["state"] for e in effects()] == ["done", "dead", "dead"],
            "the worker to settle every effect",
        )
        done, failing, declined = effects()
        assert done["key"] == f"jobs.run:{node}:1" and done["payload"] == {"job": "j1"}
        assert [a["result"] for a in done["history"]] == ["done"]
        assert [a["result"] for a in failing["history"]] == ["retry", "dead"]
        assert failing["last_error"] == "RetryableEffectError: the provider is down"
        assert [a["result"] for a in declined["history"]] == ["dead"]
        assert all(a["finished_ms"] >= a["started_ms"] for a in failing["history"])
        assert [e["key"] for e in effects("dead")] == [f"jobs.run:{node}:2", f"jobs.run:{node}:3"]
        # Handlers ran on the event loop, never on the embedded store's worker thread.
        assert JobsPlugin.threads and not any("AnyIO" in t for t in JobsPlugin.threads)

        # The result reached terminals as an op of node `server`, in the feed.
        page = link.pull(0, 100)
        authored = [c for c in page.changes if c.node_id == SERVER_NODE]
        assert [(c.record.record_id, c.record.fields["result"]) for c in authored] == [
            ("j1", f"done by {tenant}/jobs.run:{node}:1")
        ]

        # Operators: fynlo effects list / retry (--json), on the same database.
        for key, value in settings.to_env().items():
            monkeypatch.setenv(key, value)
        assert fynlo(["effects", "list", "--tenant", tenant, "--state", "dead", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [e["key"] for e in listed["effects"]] == [e["key"] for e in effects("dead")]
        assert fynlo(["effects", "retry", "--tenant", tenant, f"jobs.run:{node}:3", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["retried"] is True
        assert fynlo(["effects", "retry", "--tenant", tenant, f"jobs.run:{node}:1", "--json"]) == 1
        assert json.loads(capsys.readouterr().out)["retried"] is False
        wait_for(
            lambda: [a["result"] for a in effects()[2]["history"]] == ["dead", "dead"],
            "the retried effect to run again",
        )
    finally:
        link.close()


def test_a_bad_effects_query_is_a_typed_problem(served: tuple[str, Settings]) -> None:
    url, settings = served
    tenant = admin.create_tenant(settings, "t", "t" + secrets.token_hex(4))
    link = HttpTransport.enroll(
        url, admin.enroll_device(settings, tenant, role="manager").enrollment_code
    )
    try:
        import httpx

        assert link.tokens is not None
        response = httpx.get(
            url + "/v1/effects",
            params={"state": "exploded"},
            headers={"Authorization": f"Bearer {link.tokens.access_token}"},
        )
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "state" in response.text
    finally:
        link.close()


def test_only_a_managers_device_lists_effects(served: tuple[str, Settings]) -> None:
    """A till gets 403 not-permitted; a manager's device of the tenant sees its effects and
    no other tenant's; re-enrolling a till as a manager promotes it."""
    import httpx

    url, settings = served
    tenant, other = (admin.create_tenant(settings, "t", "t" + secrets.token_hex(4)) for _ in "ab")
    till = HttpTransport.enroll(url, admin.enroll_device(settings, tenant).enrollment_code)
    boss = HttpTransport.enroll(
        url, admin.enroll_device(settings, tenant, role="manager").enrollment_code
    )
    outsider = HttpTransport.enroll(
        url, admin.enroll_device(settings, other, role="manager").enrollment_code
    )
    try:
        node = till.node_id
        assert till.push(Batch.of(node, [job_op(node, 1, "j1", "ok")])).high_water == 1
        assert till.tokens is not None
        refused = httpx.get(
            url + "/v1/effects", headers={"Authorization": f"Bearer {till.tokens.access_token}"}
        )
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        body = refused.json()
        assert body["type"] == "https://fynlo.dev/problems/not-permitted"
        assert body["required"] == "manager"
        keys = [e["key"] for e in boss.get("/v1/effects")["effects"]]
        assert keys == [f"jobs.run:{node}:1"]
        assert outsider.get("/v1/effects")["effects"] == []
        # A role is the server's to give: `device enroll --role manager` for the same node.
        admin.enroll_device(settings, tenant, node, role="manager")
        assert [e["key"] for e in till.get("/v1/effects")["effects"]] == keys
        with pytest.raises(FynloError):
            admin.enroll_device(settings, tenant, None, role="owner")
    finally:
        for link in (till, boss, outsider):
            link.close()
