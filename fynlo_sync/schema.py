"""Domains as data: every plugin's collections, fields, strategies and state tables as one
JSON document, so a port (iOS, JavaScript) loads the rules instead of re-writing each
domain by hand. ``fynlo schema export --json`` prints it; the server serves it at
``GET /v1/schema/domains``; ``docs/protocol.md`` section 21 specifies it.

What a port cannot load is code: commands, ``derive`` and ``validate`` stay domain code,
and the document says which collections have them. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from fynlo_sync.plugins import CONFLICTS, Collection, Registry
from fynlo_sync.protocol import PROTOCOL_VERSION

__all__ = ["SCHEMA_FORMAT", "collection_document", "collection_schema", "domains_document"]

#: The version of the document's own shape (section 21); additive changes keep it.
SCHEMA_FORMAT = 1


def collection_schema(collection: Collection) -> dict[str, Any]:
    """The collection's schema of section 11.1 (the form the vectors spell out)."""
    return {
        "name": collection.name,
        "strategy": collection.strategy,
        "field_strategies": dict(sorted(collection.field_strategies.items())),
        "states": list(collection.states),
        "strict": collection.strict,
        "fields": {
            name: {
                "type": spec.type,
                "kind": spec.kind,
                "required": spec.required,
                "command_only": spec.command_only,
            }
            for name, spec in collection.fields.items()
        },
    }


def collection_document(collection: Collection, plugin: str | None) -> dict[str, Any]:
    """:func:`collection_schema` plus what section 21 adds: the owning plugin (``None``
    for a system collection), command names, the state table, and whether the collection
    has a ``derive`` or a ``validate`` (domain code a port must supply)."""
    table = collection.state_table
    return {
        **collection_schema(collection),
        "plugin": plugin,
        "commands": sorted(collection.commands),
        "state_table": None if table is None else table.to_json(),
        "derive": collection.derive is not None,
        "validate": collection.validate is not None,
    }


def domains_document(registry: Registry) -> dict[str, Any]:
    """The document of section 21 for ``registry``: plugins in registry order, collections
    by name, strategies by name."""
    owner: dict[str, str | None] = {CONFLICTS: None}
    plugins = []
    for plugin in registry.plugins:
        names = [c.name for c in plugin.collections()]
        owner.update(dict.fromkeys(names, plugin.name))
        plugins.append(
            {
                "name": plugin.name,
                "collections": sorted(names),
                "invariants": [
                    {
                        "name": inv.name,
                        "description": inv.description,
                        "on_terminals": inv.on_terminals,
                    }
                    for by, inv in registry.invariants()
                    if by == plugin.name
                ],
            }
        )
    return {
        "format": SCHEMA_FORMAT,
        "protocol": PROTOCOL_VERSION,
        "strategies": registry.strategy_names,
        "plugins": plugins,
        "collections": [
            collection_document(registry.collection(name), owner.get(name))
            for name in registry.collection_names
        ],
    }
