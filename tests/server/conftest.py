"""Fixtures for the server tests: a real server (uvicorn on a loopback port, in a thread)
over embedded SQLite, and one over PostgreSQL + Redis; devices enrolled on them; raw HTTP."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from fynlo_sync.client import Terminal
from fynlo_sync.hlc import pack, to_wire
from fynlo_sync.ops import Batch, Op
from fynlo_sync.store import SqliteTerminalStore
from fynlo_sync.testing import ManualClock
from fynlo_sync.transport.http import HttpTransport, Tokens
from server import admin
from server.settings import Settings
from server.testing import NO_RATE_LIMITS, embedded_settings, run_in_thread
from tests.core.conftest import make_registry

#: Small limits so that the limit tests are cheap.
MAX_BATCH = 20
MAX_BODY = 64 * 1024


@dataclass
class Live:
    """A running server, and helpers to make tenants and devices on it."""

    url: str
    settings: Settings
    kind: str
    links: list[HttpTransport] = field(default_factory=list)

    def tenant(self) -> str:
        return admin.create_tenant(self.settings, "test", "t" + secrets.token_hex(6))

    def device(self, tenant: str, node_id: str | None = None) -> HttpTransport:
        code = admin.enroll_device(self.settings, tenant, node_id).enrollment_code
        link = HttpTransport.enroll(self.url, code)
        self.links.append(link)
        return link

    def terminal(self, tenant: str, folder: Path, clock: ManualClock, seed: int) -> Terminal:
        link = self.device(tenant)
        return Terminal(
            SqliteTerminalStore(folder / f"{link.node_id}.db", link.node_id),
            make_registry(),
            link,
            wall=clock,
            rng=random.Random(seed),
            batch_size=7,
            page_size=5,
        )


def _settings_for(
    kind: str, request: pytest.FixtureRequest, folder: Path, **overrides: Any
) -> Settings:
    """Settings of a test server on ``kind`` (``sqlite``, or ``postgres`` with Redis): the
    small limits above, no rate limits and a quick revocation sweep, unless ``overrides``
    say otherwise."""
    limits: dict[str, Any] = {
        "max_batch": MAX_BATCH,
        "max_body_bytes": MAX_BODY,
        **NO_RATE_LIMITS,  # tests/server/test_throttle.py tests them
        # Revoked devices' sockets are swept 5 times a second (default once): the tests
        # that wait for the sweep wait less.
        "ws_recheck_ms": 200,
        **overrides,
    }
    if kind == "sqlite":
        return embedded_settings(folder, **limits)
    return Settings(
        database_url=request.getfixturevalue("postgres_session_url"),
        redis_url=request.getfixturevalue("redis_url"),
        redis_prefix="FYNLO_TEST_" + secrets.token_hex(4),
        secret_key=secrets.token_urlsafe(32),
        **limits,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A real server per backend: embedded SQLite; PostgreSQL with Redis pokes."""
    kind: str = request.param
    settings = _settings_for(kind, request, tmp_path_factory.mktemp(f"server-{kind}"))
    with run_in_thread(settings, registry=make_registry()) as url:
        server = Live(url, settings, kind)
        yield server
        for link in server.links:
            link.close()


def auth(link: HttpTransport) -> dict[str, str]:
    assert link.tokens is not None
    return {"Authorization": f"Bearer {link.tokens.access_token}"}


def raw(
    live: Live, method: str, path: str, link: HttpTransport | None = None, **kwargs: Any
) -> httpx.Response:
    headers = dict(kwargs.pop("headers", {}))
    if link is not None:
        headers.update(auth(link))
    return httpx.request(method, live.url + path, headers=headers, timeout=10, **kwargs)


def note_op(node: str, seq: int, record: str = "r1", title: str = "hello", **over: Any) -> Op:
    parts: dict[str, Any] = {
        "op_id": f"{node}-{seq}-{title}",
        "node_id": node,
        "seq": seq,
        "hlc": to_wire(pack(1_700_000_000_000 + seq, 0)),
        "base_seq": 0,
        "collection": "notes",
        "record_id": record,
        "kind": "put",
        "fields": {"title": title},
    }
    parts.update(over)
    return Op(**parts)


def batch_of(node: str, first: int, count: int, **over: Any) -> Batch:
    return Batch.of(node, [note_op(node, s, **over) for s in range(first, first + count)])


def tokens_of(link: HttpTransport) -> Tokens:
    assert link.tokens is not None
    return link.tokens
