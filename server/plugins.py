"""The server's seam for domain plugins: mounting their HTTP routes, running their
lifespan hooks. (Loading them by name, with their settings, is
:mod:`fynlo_sync.plugin_loader`.)

A plugin whose ``server_module`` names a module gets, from that module (which only the server
imports, so the plugin's domain code never depends on the web framework):

* ``ROUTES``: Litestar route handlers, mounted under ``/v1/plugins/<plugin name>``. They
  need a device's access token like every ``/v1`` route, unless a handler declares
  ``exclude_from_auth=True``: such a public route (a provider's webhook) authenticates the
  request itself, for instance by a signature over the raw body.
* ``ROOT_ROUTES`` (optional): route handlers mounted at the root, for paths a standard fixes
  (``/.well-known/...``); the same rules and the same ``plugin`` dependency.
* ``lifespan`` (optional): ``lifespan(ctx) -> AsyncContextManager[None]``, entered after the
  database is open and left before it closes, in plugin order (left in reverse).

Handlers and the lifespan get a :class:`PluginContext` (the dependency ``plugin``): the
backend, the plugin and its settings, the registry, the clock, and ``author`` (ops as node
``server``). See ``docs/plugins.md``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from fynlo_sync.errors import SettingsError
from fynlo_sync.plugins import DomainPlugin, Draft, Registry
from fynlo_sync.protocol import PushResult
from fynlo_sync.replica import Compose

if TYPE_CHECKING:
    from litestar import Router

    from server.backends import EmbeddedBackend, PostgresBackend
    from server.routes import Runtime

__all__ = [
    "PLUGIN_PREFIX",
    "PluginContext",
    "PluginServer",
    "plugin_servers",
]

#: Where a plugin's routes are mounted: ``/v1/plugins/<plugin name>/...``.
PLUGIN_PREFIX = "/v1/plugins"

Lifespan = Callable[["PluginContext"], AbstractAsyncContextManager[None]]


class PluginContext:
    """What a plugin's route handlers and lifespan see (the dependency named ``plugin``).

    A plain class, not a dataclass: Litestar would try to convert a dataclass dependency.
    """

    def __init__(self, plugin: DomainPlugin, rt: Runtime, wall: Callable[[], int]) -> None:
        self.plugin = plugin
        self._rt = rt
        self._wall = wall

    @property
    def settings(self) -> Any:
        """The plugin's settings (an instance of its ``settings_model``), or None."""
        return self.plugin.settings

    @property
    def backend(self) -> EmbeddedBackend | PostgresBackend:
        """The open database (read records, the feed's cursor, ...)."""
        return self._rt.backend

    @property
    def registry(self) -> Registry:
        return self._rt.registry

    def now_ms(self) -> int:
        """The server's wall clock, in milliseconds (injected: tests control it)."""
        return self._wall()

    async def author(self, tenant: str, drafts: Sequence[Draft] | Compose) -> PushResult:
        """Commit ops as node ``server`` through the same engine, feed and pokes as a
        terminal's push (``Compose`` decides the drafts under the tenant's lock)."""
        return await self._rt.backend.author(tenant, drafts)


class PluginServer:
    """One plugin's server side: its context, routes and lifespan hook."""

    def __init__(
        self,
        context: PluginContext,
        routes: Sequence[Any],
        lifespan: Lifespan | None,
        root_routes: Sequence[Any] = (),
    ) -> None:
        self.context = context
        self.routes = list(routes)
        self.root_routes = list(root_routes)
        self.lifespan = lifespan

    @property
    def name(self) -> str:
        return self.context.plugin.name

    @property
    def path(self) -> str:
        return f"{PLUGIN_PREFIX}/{self.name}"

    def router(self) -> Router:
        """The plugin's routes under :attr:`path`, with the ``plugin`` dependency."""
        return self._router(self.path, self.routes)

    def root_router(self) -> Router | None:
        """The plugin's ``ROOT_ROUTES`` at ``/``, if it has any."""
        return self._router("/", self.root_routes) if self.root_routes else None

    def _router(self, path: str, routes: Sequence[Any]) -> Router:
        from litestar import Router
        from litestar.di import Provide

        context = self.context
        return Router(
            path=path,
            route_handlers=list(routes),
            dependencies={"plugin": Provide(lambda: context, use_cache=True, sync_to_thread=False)},
            tags=[f"plugin: {self.name}"],
            signature_namespace={"PluginContext": PluginContext},
        )


def _url_safe(name: str) -> bool:
    return bool(name) and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in name)


def plugin_servers(rt: Runtime, wall: Callable[[], int]) -> list[PluginServer]:
    """The server side of every plugin of ``rt.registry`` that declares a
    ``server_module``: its module imported, its ``ROUTES`` and ``lifespan`` checked."""
    out: list[PluginServer] = []
    for plugin in rt.registry.plugins:
        name = plugin.server_module
        if name is None:
            continue
        if not _url_safe(plugin.name):
            raise SettingsError(
                f"plugin {plugin.name!r} has routes, so its name must be letters, digits, "
                "'-' and '_' (it is part of their path)"
            )
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise SettingsError(
                f"plugin {plugin.name!r}: cannot import its server module {name!r}: {exc}"
            ) from exc
        routes = getattr(module, "ROUTES", [])
        root_routes = getattr(module, "ROOT_ROUTES", [])
        if not isinstance(routes, list | tuple) or not isinstance(root_routes, list | tuple):
            raise SettingsError(f"{name}.ROUTES and ROOT_ROUTES must be lists of route handlers")
        lifespan = getattr(module, "lifespan", None)
        if lifespan is not None and not callable(lifespan):
            raise SettingsError(f"{name}.lifespan must be a function of the plugin context")
        out.append(PluginServer(PluginContext(plugin, rt, wall), routes, lifespan, root_routes))
    return out
