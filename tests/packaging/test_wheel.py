"""The built wheel on a base install, in a fresh virtual environment: ``fynlo --help``
lists every command, ``fynlo serve --help`` works, ``fynlo serve`` names the extra it needs,
the client imports; then the ``client`` extra alone gives the HTTP transport (not the
server). Packages come from pip's cache (or PyPI); nothing else is fetched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import fynlo_sync
from tests.packaging.test_cli import _commands

ROOT = Path(__file__).resolve().parents[2]


def _run(
    *argv: str | Path, check: bool = True, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FYNLO_", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = ""
    got = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=cwd,
        check=False,
    )
    if check:
        assert got.returncode == 0, (argv, got.stdout[-2000:], got.stderr[-2000:])
    return got


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", out, cwd=ROOT)
    (built,) = out.glob("fynlo_sync-*.whl")
    assert built.name.startswith(f"fynlo_sync-{fynlo_sync.__version__}-")
    return built


def test_the_wheel_on_a_base_install(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python, "install", "-q"]
    _run(*pip, wheel)
    fynlo = venv / "bin" / "fynlo"
    cwd = tmp_path  # not the checkout: only the installed wheel is importable

    listed = _run(fynlo, "--help", cwd=cwd)
    assert listed.stderr == ""
    for command in _commands():
        assert f"    {command} " in listed.stdout, (command, listed.stdout)
    assert (
        _run(fynlo, "--version", cwd=cwd).stdout.strip() == f"fynlo-sync {fynlo_sync.__version__}"
    )
    assert "--workers" in _run(fynlo, "serve", "--help", cwd=cwd).stdout
    refused = _run(fynlo, "serve", check=False, cwd=cwd)
    assert refused.returncode == 2
    assert "pip install 'fynlo-sync[server]'" in refused.stderr
    assert "Traceback" not in refused.stderr

    client = (
        "import fynlo_sync, importlib.util as u\n"
        "from fynlo_sync import Terminal\n"
        "from fynlo_sync.store import SqliteTerminalStore\n"
        "from fynlo_sync.transport.loopback import LoopbackTransport\n"
        "try:\n"
        "    import fynlo_sync.transport.http\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "print(u.find_spec('litestar') is None, fynlo_sync.__file__)\n"
    )
    got = _run(python, "-c", client, cwd=cwd).stdout
    assert "pip install 'fynlo-sync[client]'" in got
    assert f"True {venv}" in got  # no server packages; the installed copy, not the checkout

    _run(*pip, f"{wheel}[client]")
    with_client = (
        "import importlib.util as u\n"
        "from fynlo_sync.transport.http import HttpTransport, PokeListener, USER_AGENT\n"
        "print(USER_AGENT, u.find_spec('litestar') is None)\n"
    )
    assert _run(python, "-c", with_client, cwd=cwd).stdout.split() == [
        f"fynlo-sync/{fynlo_sync.__version__}",
        "(python)",
        "True",
    ]
