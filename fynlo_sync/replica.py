"""The server replica, synchronous: the short loop that drives the pure engine over a
:class:`~fynlo_sync.store.base.ServerStore`.

Push: decode and verify the body, then in one transaction holding the tenant's lock load
the node's high-water mark, the stored outcomes of replayed seqs and the touched records,
plan, and commit the plan. Pull: read a page of the feed and checksum it. The HTTP server
and the loopback transport both call this; the Postgres store has an async twin of the
same ten lines (:mod:`fynlo_sync.store.postgres`).
"""

from __future__ import annotations

from collections.abc import Callable

from fynlo_sync.engine import DEFAULT_MAX_BATCH, Plan, check_batch, plan_push
from fynlo_sync.errors import MalformedError
from fynlo_sync.ops import Batch, Change
from fynlo_sync.plugins import Registry
from fynlo_sync.protocol import PullPage, PushResult, decode_batch, page_checksum
from fynlo_sync.store.base import ServerStore, iter_keys

__all__ = ["DEFAULT_MAX_PAGE", "ServerReplica", "make_page", "page_size"]

DEFAULT_MAX_PAGE = 1000


class ServerReplica:
    """Engine + store. ``on_commit(tenant, plan)`` runs after each commit that changed
    something (the server pokes terminals from it)."""

    def __init__(
        self,
        store: ServerStore,
        registry: Registry,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_page: int = DEFAULT_MAX_PAGE,
        on_commit: Callable[[str, Plan], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.max_batch = max_batch
        self.max_page = max_page
        self.on_commit = on_commit

    def push(self, tenant: str, body: bytes | Batch, *, node_id: str | None = None) -> PushResult:
        """Apply a batch (raw JSON bytes, verified here, or an already verified Batch).
        ``node_id``, when given, is the authenticated device: it may push only its own ops."""
        batch = decode_batch(body, max_ops=self.max_batch) if isinstance(body, bytes) else body
        check_batch(batch, node_id=node_id, max_ops=self.max_batch)
        store = self.store
        with store.transaction(tenant):
            high_water = store.high_water(tenant, batch.node_id)
            replayed = [op.seq for op in batch.ops if op.seq <= high_water]
            prior = store.prior_outcomes(tenant, batch.node_id, replayed)
            rows = store.load(tenant, iter_keys(batch.ops))
            plan = plan_push(
                batch,
                high_water=high_water,
                prior=prior,
                rows=rows,
                registry=self.registry,
                cursor=store.cursor(tenant),
                max_ops=self.max_batch,
            )
            if plan.new_outcomes:
                store.commit(tenant, plan)
        if plan.changes and self.on_commit is not None:
            self.on_commit(tenant, plan)
        for effect in plan.effects:
            self.registry.perform(effect)
        return PushResult(
            node_id=batch.node_id,
            high_water=plan.high_water,
            cursor=plan.cursor,
            outcomes=plan.outcomes,
        )

    def pull(self, tenant: str, since: int, limit: int | None = None) -> PullPage:
        size = page_size(since, limit, self.max_page)
        return make_page(since, self.store.changes(tenant, since, size + 1), size)


def page_size(since: int, limit: int | None, max_page: int) -> int:
    """Check a pull request's cursor and limit; return the page size to serve."""
    if since < 0:
        raise MalformedError(f"cursor {since} is negative", field="cursor")
    size = max_page if limit is None else limit
    if not 1 <= size <= max_page:
        raise MalformedError(
            f"limit {size} is outside 1..{max_page}", field="limit", limit=max_page
        )
    return size


def make_page(since: int, changes: list[Change], size: int) -> PullPage:
    """The page for ``changes`` read with ``LIMIT size + 1`` (the extra one says ``more``)."""
    more = len(changes) > size
    changes = changes[:size]
    return PullPage(
        since=since,
        cursor=changes[-1].seq if changes else since,
        more=more,
        changes=changes,
        checksum=page_checksum(changes),
    )
