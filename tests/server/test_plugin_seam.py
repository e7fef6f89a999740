"""The server's plugin seam: plugins from FYNLO_PLUGINS, with settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
from litestar import get
from litestar.di import NamedDependency

import conflict
from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.errors import SettingsError
from fynlo_sync.plugins import DomainPlugin
from server.app import create_app, registry_from
from server.plugins import PluginContext
from server.settings import Settings
from server.testing import embedded_settings, run_in_thread

ROOT = Path(__file__).resolve().parents[2]
CARDS = "tests.core.test_plugin_seam:_Cards"


def test_the_registry_builds_plugins_with_their_settings() -> None:
    settings = Settings(env="dev", plugins=("fynlo_sync.domains.orders:OrdersPlugin", CARDS))
    registry = registry_from(settings, {"FYNLO_STAMP_CARD_API_KEY": "k"})
    cards = registry.plugins[1]
    assert cards.name == "stamp-card" and cards.settings.api_key == "k"
    with pytest.raises(SettingsError, match=r"^FYNLO_STAMP_CARD_API_KEY is not set"):
        registry_from(settings, {})
    with pytest.raises(SettingsError, match="is not a DomainPlugin class"):
        registry_from(settings.with_(plugins=("server.settings:Settings",)), {})
    with pytest.raises(SettingsError, match="two plugins are named 'orders'"):
        registry_from(settings.with_(plugins=(settings.plugins[0],) * 2), {})


def test_fynlo_serve_stops_at_start_up_on_a_bad_plugin_setting(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FYNLO_PLUGINS": CARDS,
        "FYNLO_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "FYNLO_STAMP_CARD_API_KEY": "k",
        "FYNLO_STAMP_CARD_STAMPS_PER_CARD": "lots",
    }
    done = subprocess.run(
        [sys.executable, "-m", "fynlo_sync.cli", "serve", "--dev", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "fynlo serve: FYNLO_STAMP_CARD_STAMPS_PER_CARD: Expected `int`" in done.stderr
    assert not (tmp_path / "x.db").exists()


# ------------------------------------------------------------ routes and the lifespan hook
#: What the lifespan of the plugin below saw, in order.
EVENTS: list[str] = []


@asynccontextmanager
async def lifespan(ctx: PluginContext) -> AsyncIterator[None]:
    """This module is the server module of ``_Hooked``: the hook runs with the database
    open (it reads the cursor) and is left before the database closes."""
    EVENTS.append(f"enter {ctx.plugin.name} cursor={await ctx.backend.cursor('nobody')}")
    try:
        yield
    finally:
        EVENTS.append(f"leave, database still open: {await ctx.backend.cursor('nobody') == 0}")


@get("/hello", exclude_from_auth=True)
async def hello(plugin: NamedDependency[PluginContext]) -> dict[str, object]:
    return {"plugin": plugin.plugin.name, "greeting": plugin.settings.greeting}


ROUTES = [hello]


class _HookedSettings(msgspec.Struct, frozen=True):
    greeting: str = "hi"


class _Hooked(DomainPlugin):
    name = "hooked"
    settings_model = _HookedSettings
    server_module = "tests.server.test_plugin_seam"


def test_a_plugins_lifespan_runs_inside_the_servers_and_its_route_is_mounted(
    tmp_path: Path,
) -> None:
    EVENTS.clear()
    hooked = _Hooked.from_env({"FYNLO_HOOKED_GREETING": "hello"})
    registry = conflict.registry([OrdersPlugin(), hooked])
    with run_in_thread(embedded_settings(tmp_path), registry=registry) as url:
        assert EVENTS == ["enter hooked cursor=0"]
        got = httpx.get(url + "/v1/plugins/hooked/hello", timeout=10)
        assert got.json() == {"plugin": "hooked", "greeting": "hello"}
        # Under its own prefix only: the same path under another name is no route.
        assert httpx.get(url + "/v1/plugins/other/hello", timeout=10).status_code == 404
    assert EVENTS == ["enter hooked cursor=0", "leave, database still open: True"]


@pytest.mark.parametrize(
    ("name", "module", "says"),
    [
        ("bad name", "tests.server.test_plugin_seam", "must be letters, digits"),
        ("gone", "tests.server.no_such_module", "cannot import its server module"),
        ("bare", "tests.server.conftest", None),
    ],
)
def test_a_plugins_server_module_is_checked_when_the_app_is_built(
    tmp_path: Path, name: str, module: str, says: str | None
) -> None:
    plugin_class = type("P", (DomainPlugin,), {"name": name, "server_module": module})
    registry = conflict.registry([plugin_class()])
    if says is None:  # a module without ROUTES or lifespan adds nothing
        assert create_app(embedded_settings(tmp_path), registry=registry) is not None
        return
    with pytest.raises(SettingsError, match=says):
        create_app(embedded_settings(tmp_path), registry=registry)
