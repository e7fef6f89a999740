"""fynlo-sync: an offline-first sync engine for point-of-sale.

Per-node op logs ordered by a hybrid logical clock, batches verified by an MD5 checksum
over RFC 8785 canonical bytes, a pure engine that plans how a batch applies, stores for
SQLite (the terminal) and the server, and a terminal client with an outbox.
"""

__version__ = "0.1.0"

from fynlo_sync.canonical import canonical_bytes, checksum
from fynlo_sync.client import Backoff, SyncReport, Terminal
from fynlo_sync.engine import Plan, apply_op, plan_push, rebase
from fynlo_sync.errors import (
    CallerError,
    FynloError,
    PeerError,
    StoreError,
    TransportError,
)
from fynlo_sync.hlc import HybridClock
from fynlo_sync.ops import Batch, Change, Conflict, Op, Outcome, Record, Stamp
from fynlo_sync.plugins import Collection, DomainPlugin, Field, Registry
from fynlo_sync.protocol import PROTOCOL_VERSION, PullPage, PushResult
from fynlo_sync.replica import ServerReplica

__all__ = [
    "PROTOCOL_VERSION",
    "Backoff",
    "Batch",
    "CallerError",
    "Change",
    "Collection",
    "Conflict",
    "DomainPlugin",
    "Field",
    "FynloError",
    "HybridClock",
    "Op",
    "Outcome",
    "PeerError",
    "Plan",
    "PullPage",
    "PushResult",
    "Record",
    "Registry",
    "ServerReplica",
    "Stamp",
    "StoreError",
    "SyncReport",
    "Terminal",
    "TransportError",
    "__version__",
    "apply_op",
    "canonical_bytes",
    "checksum",
    "plan_push",
    "rebase",
]
