"""The effect worker: claims due effects from the outbox and performs them concurrently.

It runs on an event loop (the server's lifespan starts it). Each claimed effect runs as
its own task (:meth:`~fynlo_sync.replica.AsyncServerReplica.attempt`: the plugin's handler,
bounded by the policy's timeout), so a slow provider call holds one slot and blocks no
push, pull or other effect; ``concurrency`` bounds the slots. The attempt is then settled
through the source, with the ops the handler authored, in one transaction.

The source is anything with the three async methods of :class:`EffectSource`:
:class:`~fynlo_sync.replica.AsyncServerReplica` (Postgres: several processes share one
queue through ``FOR UPDATE SKIP LOCKED``), or the embedded server's adapter that runs
the store calls on its SQLite worker thread while handlers run on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Protocol

from fynlo_sync.effects import EffectRow, Settlement
from fynlo_sync.ops import Record
from fynlo_sync.replica import Authored, Read

__all__ = ["EffectSource", "EffectWorker", "WorkerStats"]

_log = logging.getLogger("fynlo.effects")


class EffectSource(Protocol):
    async def claim_effects(self, limit: int) -> list[EffectRow]: ...

    async def attempt(self, row: EffectRow, read: Read) -> tuple[Settlement, Authored]: ...

    async def read(self, tenant: str, collection: str, record_id: str) -> Record | None: ...

    async def finish_effect(
        self, row: EffectRow, settlement: Settlement, drafts: Authored = ()
    ) -> bool: ...


@dataclass
class WorkerStats:
    claimed: int = 0
    done: int = 0
    retried: int = 0
    dead: int = 0
    #: Results dropped because the claim's lease ran out first.
    lost: int = 0
    #: Claims or settlements that failed on the store (the lease makes them re-run).
    store_errors: int = 0


class EffectWorker:
    """Claim, perform and settle effects until cancelled (:meth:`run`), or until nothing
    is due (:meth:`drain`). :meth:`wake` says an effect may be due now (after a commit
    that wrote one), so the worker does not wait for its next poll."""

    def __init__(self, source: EffectSource, *, concurrency: int = 100, poll_ms: int = 500) -> None:
        if concurrency < 1 or poll_ms < 1:
            raise ValueError("an effect worker needs concurrency >= 1 and poll_ms >= 1")
        self.source = source
        self.concurrency = concurrency
        self.poll_s = poll_ms / 1000
        self.stats = WorkerStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def _one(self, row: EffectRow) -> None:
        try:
            settlement, drafts = await self.source.attempt(row, self.source.read)
            if not await self.source.finish_effect(row, settlement, drafts):
                self.stats.lost += 1
                return
            if settlement.state == "done":
                self.stats.done += 1
            elif settlement.state == "dead":
                self.stats.dead += 1
                _log.warning("effect %s/%s is dead: %s", row.tenant, row.key, settlement.error)
            else:
                self.stats.retried += 1
        except Exception:  # the store failed: the lease runs out and the effect re-runs
            self.stats.store_errors += 1
            _log.exception("settling effect %s/%s failed", row.tenant, row.key)
        finally:
            self._wake.set()

    async def _claim(self) -> int:
        free = self.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        try:
            rows = await self.source.claim_effects(free)
        except Exception:
            self.stats.store_errors += 1
            _log.exception("claiming effects failed")
            return 0
        for row in rows:
            task = asyncio.get_running_loop().create_task(self._one(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.stats.claimed += len(rows)
        return len(rows)

    async def run(self) -> None:
        """Work until cancelled; in-flight attempts are cancelled with it (their leases
        run out and another worker, or this one after a restart, re-runs them)."""
        try:
            while True:
                self._wake.clear()
                if await self._claim() == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self.poll_s)
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self) -> WorkerStats:
        """Perform everything due now (and what that makes due), then return."""
        while await self._claim() or self._tasks:
            if self._tasks:
                await asyncio.wait(set(self._tasks), return_when=asyncio.FIRST_COMPLETED)
        return self.stats
