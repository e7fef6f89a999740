"""Service fixtures shared by every test folder: a real PostgreSQL database and a real Redis.

PostgreSQL: ``FYNLO_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
names a server where the tests may create databases. One database is created per test
session (``fynlo_test_<pid>_<random>``) and dropped at the end; :func:`postgres_url` gives
its URL with the store's tables emptied before each test.

Redis: ``FYNLO_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``). Tests keep apart by
naming their own channels (tenant ids are random).

When a service is absent the tests that need it skip, saying how to run them; under
``CI=true`` they fail instead, so CI cannot pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

__all__: list[str] = []

POSTGRES_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_DEFAULT = "redis://127.0.0.1:6379/0"

_HOW_POSTGRES = (
    "PostgreSQL is not reachable at {url} ({error}). Start one (e.g. `docker run -p 5432:5432 "
    "-e POSTGRES_HOST_AUTH_METHOD=trust postgres`) or point FYNLO_TEST_POSTGRES_URL at a "
    "server where this user may CREATE DATABASE."
)
_HOW_REDIS = (
    "Redis is not reachable at {url} ({error}). Start one (e.g. `docker run -p 6379:6379 "
    "redis`) or point FYNLO_TEST_REDIS_URL at one."
)


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and a required service is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _truncate(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        names = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename LIKE 'fynlo\\_%' AND tablename <> 'fynlo_migrations'"
        )
        if names:
            await conn.execute(
                "TRUNCATE " + ", ".join(f'"{row[0]}"' for row in names) + " RESTART IDENTITY"
            )
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    try:
        import asyncpg  # noqa: F401
    except ModuleNotFoundError:
        _missing("asyncpg is not installed: `pip install -e '.[dev]'`")
    admin = os.environ.get("FYNLO_TEST_POSTGRES_URL", POSTGRES_DEFAULT)
    name = f"fynlo_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        _missing(_HOW_POSTGRES.format(url=admin, error=f"{type(exc).__name__}: {exc}"))
    try:
        yield _with_database(admin, name)
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def make_postgres_database(postgres_session_url: str) -> Iterator[Callable[[], str]]:
    """A factory of further fresh, empty databases (never migrated), all dropped at the end
    of the session: for tests of start-up itself."""
    admin = os.environ.get("FYNLO_TEST_POSTGRES_URL", POSTGRES_DEFAULT)
    made: list[str] = []

    def make() -> str:
        name = f"{urlsplit(postgres_session_url).path.lstrip('/')}_{len(made) + 1}"
        asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
        made.append(name)
        return _with_database(admin, name)

    try:
        yield make
    finally:
        for name in made:
            asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(postgres_session_url: str) -> str:
    """The session's database with every fynlo table emptied (migrations kept)."""
    asyncio.run(_truncate(postgres_session_url))
    return postgres_session_url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis server's URL."""
    url = os.environ.get("FYNLO_TEST_REDIS_URL", REDIS_DEFAULT)
    try:
        import redis
    except ModuleNotFoundError:
        _missing("redis is not installed: `pip install -e '.[dev]'`")
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        _missing(_HOW_REDIS.format(url=url, error=f"{type(exc).__name__}: {exc}"))
    return url
