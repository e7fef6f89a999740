"""Conflict strategies for fynlo-sync.

A strategy is a small object with a ``name`` and a pure ``resolve(contest) -> Resolution``
(see :class:`fynlo_sync.plugins.Strategy`). Collections choose one by name, per collection
and per field. Custom strategies plug in the same way::

    class CheapestWins:
        name = "cheapest_wins"
        def resolve(self, contest):
            return Resolution("value", min(contest.server_value, contest.incoming_value))

    registry = conflict.registry([OrdersPlugin()], extra=[CheapestWins()])
"""

from __future__ import annotations

from collections.abc import Iterable

from conflict.strategies import (
    BUILTINS,
    ClientWins,
    Manual,
    ServerWins,
    SmartMerge,
    last_writer_wins,
)
from fynlo_sync.plugins import DomainPlugin, Registry, Strategy

__all__ = [
    "BUILTINS",
    "ClientWins",
    "Manual",
    "ServerWins",
    "SmartMerge",
    "last_writer_wins",
    "registry",
]


def registry(plugins: Iterable[DomainPlugin] = (), extra: Iterable[Strategy] = ()) -> Registry:
    """A registry with the built-in strategies, ``extra`` ones, and the plugins'."""
    return Registry(plugins, strategies=[*BUILTINS, *extra])
