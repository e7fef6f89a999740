"""The orders plugin printing its kitchen tickets through the test service (its own
process) with the effect's key as the idempotency key: what the crash tests load through
``FYNLO_PLUGINS=tests.effects.plugin:PrintingOrders``. Settings:
``FYNLO_ORDERS_PRINTER_URL`` and ``FYNLO_ORDERS_DELAY_MS`` (how long the printer holds
each ticket)."""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx
import msgspec

from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.effects import EffectContext, RetryableEffectError

__all__ = ["PrinterSettings", "PrintingOrders"]

logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per ticket


class PrinterSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    printer_url: str
    delay_ms: int = 0


class PrintingOrders(OrdersPlugin):
    settings_model = PrinterSettings

    def __init__(self, settings: Any = None) -> None:
        super().__init__()
        self.settings = settings
        self._client: httpx.AsyncClient | None = None

    async def print_ticket(self, ctx: EffectContext) -> None:
        settings: PrinterSettings = ctx.settings
        if self._client is None:  # one pool per server process (it runs one event loop)
            self._client = httpx.AsyncClient(timeout=10)
        client = self._client
        try:
            response = await client.post(
                settings.printer_url + "/call",
                headers={"Idempotency-Key": ctx.key, "X-Worker": str(os.getpid())},
                json={"delay_ms": settings.delay_ms, "ticket": dict(ctx.effect.payload)},
            )
        except httpx.HTTPError as exc:
            raise RetryableEffectError(f"printer unreachable: {exc}") from exc
        if response.status_code != 200:
            raise RetryableEffectError(f"printer answered {response.status_code}")
