"""The sandbox bank: a UK payment-initiation API (TrueLayer Payments v3 shape) as its own
process, with real HTTP, signed webhooks, a consent page and a clock a test can move.

:mod:`.core` is its behaviour (no HTTP), :mod:`.app` the Litestar app, and
``fynlo sandbox bank --port P`` runs it.
"""

from __future__ import annotations

__all__: list[str] = []
