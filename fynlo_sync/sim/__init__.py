"""A deterministic fault simulator for fynlo-sync, and the ``fynlo demo`` service.

One seeded world with virtual time: terminals (the real client over SQLite files), one
server replica, a virtual network that drops, duplicates, delays, reorders and partitions
messages per link, crashes and restarts, clocks that drift and jump. Every random choice
is in the :class:`Schedule`, generated from one seed, so the same seed gives the same
trace byte for byte. Invariants are checked after every step (:mod:`.invariants`); a
failing schedule shrinks to a short reproduction (:func:`shrink`).

Point it at your own plugins by passing a registry to :func:`run_schedule` (the
restaurant workload writes to ``orders``, ``stock`` and ``tables``).
"""

from fynlo_sync.sim.invariants import INVARIANTS, Violation
from fynlo_sync.sim.runner import Failure, RunResult, Summary, run_many, run_schedule, shrink
from fynlo_sync.sim.schedule import FAULTS, Schedule, Step, generate
from fynlo_sync.sim.world import World, restaurant_registry

__all__ = [
    "FAULTS",
    "INVARIANTS",
    "Failure",
    "RunResult",
    "Schedule",
    "Step",
    "Summary",
    "Violation",
    "World",
    "generate",
    "restaurant_registry",
    "run_many",
    "run_schedule",
    "shrink",
]
