"""The fynlo-sync server: a thin Litestar app over the sync engine.

``create_app(settings)`` builds it; ``Settings.from_env()`` reads ``FYNLO_*`` variables;
``fynlo serve`` runs it under uvicorn. See :mod:`server.app` for the wiring,
:mod:`server.admin` to create tenants and enroll devices from Python, and
:mod:`server.testing` to run a real server on a loopback port in a thread.
"""

from server.app import create_app
from server.settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "create_app"]
