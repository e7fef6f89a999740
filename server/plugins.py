"""The server's seam for domain plugins: loading them, with their settings.

``FYNLO_PLUGINS`` names plugins as ``module:Class``. Each is built by
:meth:`~fynlo_sync.plugins.DomainPlugin.from_env`, which reads the plugin's own settings from
``FYNLO_<PLUGIN>_<FIELD>`` and validates them, so a bad setting stops the server at start-up
with an error naming the variable (see ``docs/plugins.md``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping

from fynlo_sync.errors import SettingsError
from fynlo_sync.plugins import DomainPlugin

__all__ = ["load_plugin", "load_plugins"]


def load_plugin(spec: str, environ: Mapping[str, str]) -> DomainPlugin:
    """Import ``module:Class`` and build the plugin with its settings from ``environ``."""
    module_name, _, class_name = spec.partition(":")
    try:
        plugin_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"FYNLO_PLUGINS: cannot load {spec!r}: {exc}") from exc
    if not (isinstance(plugin_class, type) and issubclass(plugin_class, DomainPlugin)):
        raise SettingsError(f"FYNLO_PLUGINS: {spec!r} is not a DomainPlugin class")
    return plugin_class.from_env(environ)


def load_plugins(
    specs: Iterable[str], environ: Mapping[str, str] | None = None
) -> list[DomainPlugin]:
    """Every plugin ``specs`` names, in order (``environ``: default the process's)."""
    env = os.environ if environ is None else environ
    plugins = [load_plugin(spec, env) for spec in specs]
    names = [p.name for p in plugins]
    for name in names:
        if names.count(name) > 1:
            raise SettingsError(f"FYNLO_PLUGINS: two plugins are named {name!r}")
    return plugins
