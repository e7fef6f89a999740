"""docs/deploy.md keeps up with the code: every FYNLO_ variable the settings read is in its
table, and the unit file and container file it shows name real commands and paths."""

from __future__ import annotations

import re
from pathlib import Path

from tests.packaging.test_cli import _commands

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deploy.md").read_text()


def test_every_setting_is_in_the_table() -> None:
    source = (ROOT / "server" / "settings.py").read_text()
    read = set(re.findall(r'"(FYNLO_[A-Z_]+)"', source))
    table = set(re.findall(r"^\| `(FYNLO_[A-Z_<>]+)`", DOC, re.MULTILINE))
    assert read, "no settings found"
    assert read <= table, f"missing from docs/deploy.md: {sorted(read - table)}"


def test_the_commands_it_shows_exist() -> None:
    commands = set(_commands())
    shown = set(re.findall(r"(?:^|`|/bin/|\[\")fynlo\"?,? \"?([a-z]+)", DOC, re.MULTILINE))
    assert {"serve", "migrate", "backup"} <= shown
    assert shown <= commands, shown - commands
    assert "/health/ready" in DOC and "/health/live" in DOC and "pg_dump" in DOC
