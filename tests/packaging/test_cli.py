"""The ``fynlo`` command's rules (see :mod:`fynlo_sync.cli`): command modules import only
the standard library at top level, every command is listed without any extra, a command
needing a missing extra names it and exits 2, and every imported package is declared."""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import importlib.util
import json
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import pytest

import fynlo_sync
from fynlo_sync.cli import COMMAND_MODULES, EXTRAS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
OWN = {"fynlo_sync", "server", "conflict", "benchmarks", "tests", "examples"}
BASE = {"msgspec", "sqlite_utils"}
#: Imported by a shipped module for tests only, inside a function (dev group).
TEST_ONLY = {"hypothesis": "fynlo_sync/testing.py (strategies for tests)"}


def _source(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None, module
    return Path(spec.origin)


def _top_level_imports(tree: ast.Module) -> set[str]:
    """Root names imported when the module is imported (not inside functions or classes,
    nor under ``if TYPE_CHECKING:``)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
                else:
                    found.add("<relative>")
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if test not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.With):
                visit(node.body)

    visit(tree.body)
    return found


def _all_imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_import_scanner_sees_top_level_imports_only() -> None:
    tree = ast.parse(
        "from __future__ import annotations\nimport os\nif TYPE_CHECKING:\n    import litestar\n"
        "try:\n    import httpx\nexcept ImportError:\n    pass\n"
        "def f():\n    import uvicorn\n"
    )
    assert _top_level_imports(tree) == {"__future__", "os", "httpx"}


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_a_command_module_imports_only_the_standard_library(module: str) -> None:
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    imported = _top_level_imports(ast.parse(_source(module).read_text()))
    assert imported <= stdlib, (
        f"{module} imports {sorted(imported - stdlib)} at top level: import them inside the "
        "handler (see fynlo_sync.cli)"
    )


_BLOCKED = sorted({name for names in EXTRAS.values() for name in names} | {"hypothesis", "pytest"})

_WITHOUT_EXTRAS = """
import importlib.abc, json, sys
BLOCKED = set(json.loads(sys.argv[1]))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from fynlo_sync.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_without_extras(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRAS, json.dumps(_BLOCKED), *argv],
        capture_output=True,
        check=False,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


def test_every_command_is_listed_without_any_extra() -> None:
    commands = _commands()
    assert {"serve", "migrate", "tenant", "device", "sim", "demo"} <= set(commands)
    listed = _run_without_extras("--help")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr == ""
    for command in commands:
        assert f"    {command} " in listed.stdout, command
    serve = _run_without_extras("serve", "--help")
    assert serve.returncode == 0 and "--workers" in serve.stdout, serve.stderr


@pytest.mark.parametrize(("argv", "extra"), [(["serve"], "server"), (["demo"], "server")])
def test_a_command_without_its_extra_names_it_and_exits_2(argv: list[str], extra: str) -> None:
    got = _run_without_extras(*argv)
    assert got.returncode == 2, (got.stdout, got.stderr)
    assert f"pip install 'fynlo-sync[{extra}]'" in got.stderr
    assert "Traceback" not in got.stderr


def test_a_url_whose_extra_is_missing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server extra is here, asyncpg is not importable: ``migrate`` on a PostgreSQL URL
    says to install the postgres extra."""
    monkeypatch.setitem(EXTRAS, "postgres", ("fynlo_no_such_driver",))
    monkeypatch.setenv("FYNLO_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("FYNLO_ENV", "dev")
    assert main(["migrate"]) == 2


def test_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"fynlo-sync {fynlo_sync.__version__}"
    assert importlib.metadata.version("fynlo-sync") == fynlo_sync.__version__


def _pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dist(requirement: str) -> str:
    name = requirement
    for stop in "[<>=!~; ":
        name = name.split(stop)[0]
    return name.lower().replace("_", "-")


def _extra_dists(extras: dict[str, list[str]], extra: str) -> set[str]:
    out: set[str] = set()
    for requirement in extras[extra]:
        if _dist(requirement) == "fynlo-sync":
            inner = requirement.split("[", 1)[1].split("]", 1)[0]
            for name in inner.split(","):
                out |= _extra_dists(extras, name.strip())
        else:
            out.add(_dist(requirement))
    return out


def test_extras_name_the_packages_pyproject_declares() -> None:
    project = _pyproject()["project"]
    assert isinstance(project, dict)
    extras: dict[str, list[str]] = project["optional-dependencies"]
    assert sorted(extras) == sorted(EXTRAS)
    provides = importlib.metadata.packages_distributions()
    for extra, names in EXTRAS.items():
        dists = _extra_dists(extras, extra)
        for name in names:
            if name in ("stripe", "qrcode") and name not in provides:
                continue  # the payments extra is not part of the dev install
            owners = {d.lower().replace("_", "-") for d in provides.get(name, [])}
            assert owners & dists, f"{name} (extra {extra}) comes from {owners}, not {dists}"
    assert "Typing :: Typed" in project["classifiers"]
    assert "dev" in _pyproject()["dependency-groups"]  # type: ignore[operator]


def test_every_imported_package_is_declared() -> None:
    """Every import in the shipped packages is the standard library, the project, a base
    dependency, or a package of an extra."""
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    declared = BASE | {name for names in EXTRAS.values() for name in names} | set(TEST_ONLY)
    for package in ("fynlo_sync", "server", "conflict"):
        for path in sorted((ROOT / package).rglob("*.py")):
            imported = _all_imports(ast.parse(path.read_text())) - stdlib - OWN
            assert imported <= declared, f"{path.relative_to(ROOT)}: {imported - declared}"


def test_the_client_says_who_it_is() -> None:
    """The User-Agent of a push (over a real socket to a listener that records it)."""
    from fynlo_sync.errors import TransportError
    from fynlo_sync.transport.http import USER_AGENT, HttpTransport, Tokens

    seen: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                seen.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        link = HttpTransport(f"http://127.0.0.1:{port}", Tokens("a", "r", "n1", "t1", 60))
        with pytest.raises(TransportError):
            link.pull(0, 10)
        link.close()
        thread.join(10)
    assert f"fynlo-sync/{fynlo_sync.__version__} (python)" == USER_AGENT
    assert f"user-agent: {USER_AGENT}".lower().encode() in seen[0].lower()
