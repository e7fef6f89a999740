"""Settings, the admin commands, account rules that need a clock, and the Postgres store's
per-tenant serialization."""

from __future__ import annotations

import json
import random
from pathlib import Path

import anyio
import pytest

from fynlo_sync.cli import main
from fynlo_sync.errors import UnauthenticatedError
from fynlo_sync.ops import Batch
from fynlo_sync.protocol import encode_batch
from fynlo_sync.replica import AsyncServerReplica
from fynlo_sync.store.postgres import PostgresServerStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.http import HttpTransport
from server.accounts import Accounts
from server.app import registry_from
from server.settings import Settings, SettingsError
from server.sqlport import SqliteSql
from server.testing import embedded_settings, run_in_thread
from tests.core.conftest import make_registry
from tests.server.conftest import note_op


def test_settings_from_env() -> None:
    with pytest.raises(SettingsError, match="FYNLO_SECRET_KEY is not set"):
        Settings.from_env({})
    with pytest.raises(SettingsError, match="too short"):
        Settings.from_env({"FYNLO_SECRET_KEY": "short"})
    with pytest.raises(SettingsError, match="must start with sqlite"):
        Settings.from_env({"FYNLO_ENV": "dev", "FYNLO_DATABASE_URL": "mysql://x"})
    with pytest.raises(SettingsError, match="FYNLO_MAX_BATCH"):
        Settings.from_env({"FYNLO_ENV": "dev", "FYNLO_MAX_BATCH": "many"})
    dev = Settings.from_env({"FYNLO_ENV": "dev"})
    assert dev.database_url == "sqlite:///./fynlo.db" and len(dev.secret_key) >= 32
    env = {
        "FYNLO_DATABASE_URL": "postgresql://u@h/db",
        "FYNLO_REDIS_URL": "redis://h:6379/0",
        "FYNLO_SECRET_KEY": "k" * 40,
        "FYNLO_MAX_BATCH": "50",
    }
    prod = Settings.from_env(env)
    assert (prod.kind, prod.redis_url, prod.max_batch) == ("postgres", env["FYNLO_REDIS_URL"], 50)
    assert Settings.from_env(prod.to_env()) == prod
    with pytest.raises(SettingsError, match="module:Class"):
        Settings.from_env({"FYNLO_ENV": "dev", "FYNLO_PLUGINS": "no_colon"})
    custom = Settings.from_env(
        {"FYNLO_ENV": "dev", "FYNLO_PLUGINS": "tests.core.conftest:NotesPlugin"}
    )
    assert "notes_manual" in registry_from(custom).collection_names
    assert "orders" not in registry_from(custom).collection_names
    with pytest.raises(SettingsError, match="cannot load"):
        registry_from(custom.with_(plugins=("tests.core.conftest:Nothing",)))


def test_cli_tenant_enroll_revoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = embedded_settings(tmp_path)
    monkeypatch.setenv("FYNLO_DATABASE_URL", settings.database_url)
    monkeypatch.delenv("FYNLO_SECRET_KEY", raising=False)
    assert main(["migrate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"database": "sqlite", "migrated": True}
    assert main(["tenant", "create", "Cafe", "--json"]) == 0
    tenant = json.loads(capsys.readouterr().out)["tenant_id"]
    assert main(["device", "enroll", "--tenant", tenant, "--json"]) == 0
    enrolled = json.loads(capsys.readouterr().out)
    assert set(enrolled) >= {"node_id", "enrollment_code"}
    assert main(["device", "enroll", "--tenant", "no-such-tenant", "--json"]) == 2
    assert "no tenant" in capsys.readouterr().err
    with run_in_thread(settings) as url:
        link = HttpTransport.enroll(url, enrolled["enrollment_code"])
        assert link.node_id == enrolled["node_id"]
        assert link.pull(0, 10).cursor == 0
        assert main(["device", "revoke", "--tenant", tenant, "--node", link.node_id]) == 0
        assert capsys.readouterr().out == "revoked\n"
        with pytest.raises(UnauthenticatedError):
            link.pull(0, 10)
        link.close()
    assert main(["device", "list", "--tenant", tenant, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["devices"]
    assert listed == [{"node_id": enrolled["node_id"], "role": "terminal", "revoked": True}]
    assert main(["device", "enroll", "--tenant", tenant, "--role", "manager", "--json"]) == 0
    boss = json.loads(capsys.readouterr().out)["node_id"]
    assert main(["device", "list", "--tenant", tenant, "--json"]) == 0
    roles = {d["node_id"]: d["role"] for d in json.loads(capsys.readouterr().out)["devices"]}
    assert roles == {enrolled["node_id"]: "terminal", boss: "manager"}


def test_codes_and_refresh_tokens_expire(tmp_path: Path) -> None:
    clock = ManualClock()

    async def run() -> None:
        sql = SqliteSql(tmp_path / "accounts.db")
        accounts = Accounts(sql, now_ms=clock, enrollment_ttl_s=60, refresh_ttl_s=600)
        await accounts.migrate()
        assert await accounts.migrate() == []
        tenant = await accounts.create_tenant("cafe")
        late = await accounts.enroll(tenant)
        clock.advance(60_000)
        with pytest.raises(UnauthenticatedError):
            await accounts.redeem(late.enrollment_code)
        grant = await accounts.redeem((await accounts.enroll(tenant)).enrollment_code)
        clock.advance(599_000)
        grant = await accounts.refresh(grant.refresh_token)  # just in time; a fresh one
        clock.advance(600_000)
        with pytest.raises(UnauthenticatedError, match="expired"):
            await accounts.refresh(grant.refresh_token)
        state = await accounts.device(tenant, grant.node_id)
        assert state is not None and not state.revoked and state.epoch == grant.epoch
        await sql.close()

    anyio.run(run)


@pytest.mark.postgres
def test_concurrent_pushes_of_one_tenant_serialize_on_postgres(postgres_url: str) -> None:
    """Eight nodes push at once through separate connections: the tenant lock makes the
    feed gapless and each node's ops land exactly once."""
    nodes = [f"n{i}" for i in range(8)]

    async def run() -> list[int]:
        store = await PostgresServerStore.connect(postgres_url, max_size=8)
        replica = AsyncServerReplica(store, make_registry())
        try:

            async def node_pushes(node: str) -> None:
                for first in (1, 4):
                    ops = [note_op(node, s, record=f"{node}-{s}") for s in range(first, first + 3)]
                    await replica.push("t", encode_batch(Batch.of(node, ops)), node_id=node)

            async with anyio.create_task_group() as tg:
                for node in random.Random(1).sample(nodes, k=len(nodes)):
                    tg.start_soon(node_pushes, node)
            page = await replica.pull("t", 0, 1000)
            assert sorted(c.op_id for c in page.changes) == sorted(
                f"{n}-{s}-hello" for n in nodes for s in range(1, 7)
            )
            assert await store.high_waters("t") == dict.fromkeys(nodes, 6)
            return [c.seq for c in page.changes]
        finally:
            await store.close()

    assert anyio.run(run) == list(range(1, 49))
