"""Stand-ins with real behaviour for the outside services a payment needs: a sandbox bank
(``fynlo sandbox bank``), and helpers that run those and localstripe as separate processes
on free loopback ports (:mod:`fynlo_sync.sandbox.processes`)."""

from __future__ import annotations

__all__: list[str] = []
