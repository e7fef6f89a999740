"""The rest of the restaurant floor the simulator needs beyond orders.

Two small collections with real behaviour, so two invariants have something to bite on:

* ``stock``: kitchen stock per item, a ``counter`` field. Each op writes a delta, so an op
  applied twice (on the server or in a terminal's local view) shows up as a wrong count.
* ``tables``: the table plan (section, seats), under the ``manual`` strategy: two
  terminals that re-seat the same table while they cannot see each other park a conflict
  in the queue, which a person (the workload) resolves later.
"""

from __future__ import annotations

from collections.abc import Iterable

from fynlo_sync.plugins import Collection, DomainPlugin, Field

__all__ = ["STOCK", "TABLES", "FloorPlugin"]

STOCK = "stock"
TABLES = "tables"

_STOCK = Collection(
    name=STOCK,
    fields={"item": Field("str", required=True), "count": Field("int", kind="counter")},
    strategy="smart_merge",
)

_TABLES = Collection(
    name=TABLES,
    fields={"section": Field("str"), "seats": Field("int")},
    strategy="manual",
)


class FloorPlugin(DomainPlugin):
    name = "floor"

    def collections(self) -> Iterable[Collection]:
        return (_STOCK, _TABLES)
