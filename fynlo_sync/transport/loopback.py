"""An in-process link from a terminal to a server replica, through the real wire encoding.

Every message is encoded to JSON bytes and decoded on the other side, so the loopback
exercises exactly what HTTP would carry. Tests and the simulator wrap it to drop,
duplicate, delay or reorder messages.
"""

from __future__ import annotations

from fynlo_sync.ops import Batch
from fynlo_sync.protocol import (
    PageRows,
    PullPage,
    PushResult,
    decode,
    decode_page,
    decode_page_rows,
    encode,
    encode_batch,
)
from fynlo_sync.replica import ServerReplica

__all__ = ["LoopbackTransport"]


class LoopbackTransport:
    def __init__(
        self,
        replica: ServerReplica,
        tenant: str,
        node_id: str,
        *,
        client_address: str | None = None,
    ) -> None:
        self.replica = replica
        self.tenant = tenant
        self.node_id = node_id
        #: The peer address the server sees (a terminal's network, for the IP allow-list).
        self.client_address = client_address

    def push(self, batch: Batch) -> PushResult:
        result = self.replica.push(
            self.tenant,
            encode_batch(batch),
            node_id=self.node_id,
            client_address=self.client_address,
        )
        return decode(encode(result), PushResult)

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        page = self.replica.pull_wire(
            self.tenant, since, limit, compact=compact, node_id=self.node_id
        )
        return decode_page(encode(page))

    def pull_rows(self, since: int, limit: int, *, compact: bool, node_id: str) -> PageRows:
        """:meth:`pull` as the terminal applies it (:class:`~fynlo_sync.protocol.PageRows`)."""
        page = self.replica.pull_wire(
            self.tenant, since, limit, compact=compact, node_id=self.node_id
        )
        return decode_page_rows(encode(page), node_id)
