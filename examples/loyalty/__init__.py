"""A complete small domain plugin: a loyalty stamp card (see ``docs/plugins.md``).

``examples.loyalty.plugin`` is the pure domain (collection, state table, commands,
invariant, settings); ``examples.loyalty.server`` holds its HTTP routes, which only the
server imports. Serve it with
``FYNLO_PLUGINS=fynlo_sync.domains.orders:OrdersPlugin,examples.loyalty.plugin:LoyaltyPlugin``.
"""
