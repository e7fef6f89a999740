"""The server's plugin seam: plugins from FYNLO_PLUGINS, with settings from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fynlo_sync.errors import SettingsError
from server.app import registry_from
from server.settings import Settings

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
