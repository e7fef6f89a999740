"""The fynlo-sync server: a thin Litestar app over the sync engine.

``create_app(settings)`` builds it; ``Settings.from_env()`` reads ``FYNLO_*`` variables;
``fynlo serve`` runs it under uvicorn. See :mod:`server.app` for the wiring,
:mod:`server.admin` to create tenants and enroll devices from Python, and
:mod:`server.testing` to run a real server on a loopback port in a thread.

The names are loaded on first use, so that importing :mod:`server.cli` (which lists the
server's commands on every install) needs no extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.app import create_app
    from server.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "create_app"]

_WHERE = {
    "create_app": "server.app",
    "Settings": "server.settings",
    "SettingsError": "server.settings",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'server' has no attribute {name!r}")
