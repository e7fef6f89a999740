"""Loading domain plugins by name: ``FYNLO_PLUGINS`` lists them as ``module:Class``.

Each is built by :meth:`~fynlo_sync.plugins.DomainPlugin.from_env`, which reads the plugin's
own settings from ``FYNLO_<PLUGIN>_<FIELD>`` and validates them, so a bad setting stops
whoever loads it (``fynlo serve``, ``fynlo check``, ``fynlo schema export``) at once, with an
error naming the variable. The server, the CLI and tests share this one loader.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping

from fynlo_sync.errors import SettingsError
from fynlo_sync.plugins import DomainPlugin

__all__ = ["DEFAULT_PLUGINS", "check_specs", "load_plugin", "load_plugins", "plugin_specs"]

#: What ``FYNLO_PLUGINS`` means when it is not set.
DEFAULT_PLUGINS: tuple[str, ...] = ("fynlo_sync.domains.orders:OrdersPlugin",)


def plugin_specs(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The ``module:Class`` specs of ``FYNLO_PLUGINS`` (comma separated; unset: the
    default; set but empty: none), each checked for its form."""
    raw = environ.get("FYNLO_PLUGINS")
    if raw is None:
        return DEFAULT_PLUGINS
    specs = tuple(p.strip() for p in raw.split(",") if p.strip())
    check_specs(specs)
    return specs


def check_specs(specs: Iterable[str]) -> None:
    """Raise :class:`SettingsError` unless every spec has the form ``module:Class``."""
    for spec in specs:
        if spec.count(":") != 1:
            raise SettingsError(f"FYNLO_PLUGINS: {spec!r} is not of the form module:Class")


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
