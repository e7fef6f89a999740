"""The orders plugin with a slow kitchen printer: each ticket's effect takes
``FYNLO_ORDERS_DELAY_MS`` (an outside call in flight), for benchmark 12."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from fynlo_sync.domains.orders import OrdersPlugin
from fynlo_sync.effects import EffectContext

__all__ = ["SlowOrders", "SlowSettings"]


class SlowSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    delay_ms: int = 2000


class SlowOrders(OrdersPlugin):
    settings_model = SlowSettings

    def __init__(self, settings: Any = None) -> None:
        super().__init__()
        self.settings = settings

    async def print_ticket(self, ctx: EffectContext) -> None:
        settings: SlowSettings = ctx.settings
        await asyncio.sleep(settings.delay_ms / 1000)
