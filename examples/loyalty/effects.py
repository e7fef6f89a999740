"""The loyalty plugin's effect handler: tell the customer of a reward (the one module of
the example that calls out; the plugin imports it only when the server asks for its
handlers).

``reward_notice`` POSTs ``{"card_id", "earned"}`` to ``FYNLO_LOYALTY_NOTIFY_URL`` with the
effect's key as ``Idempotency-Key``, so a second attempt (a crash after the call, a timeout
whose answer was lost) is answered from the first instead of notifying twice. Then it
records the notice on the card, as a ``noticed`` command the server authors in the same
transaction that marks the effect done.
"""

from __future__ import annotations

from collections.abc import Mapping

from examples.loyalty.plugin import CARDS, LoyaltySettings
from fynlo_sync.effects import (
    EffectContext,
    EffectHandler,
    PermanentEffectError,
    RetryableEffectError,
)

__all__ = ["HANDLERS", "reward_notice"]


async def reward_notice(ctx: EffectContext) -> None:
    import httpx

    settings: LoyaltySettings = ctx.settings
    if settings.notify_url is None:
        return  # turned off after the effect was planned: nothing to send
    payload = dict(ctx.effect.payload)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            got = await client.post(
                settings.notify_url, json=payload, headers={"Idempotency-Key": ctx.key}
            )
    except httpx.TransportError as exc:
        # Maybe sent, maybe not: the retry carries the same key, and the service answers
        # a key it has seen with its first answer.
        raise RetryableEffectError(f"the notice service did not answer: {exc!r}") from exc
    if got.status_code == 429 or got.status_code >= 500:
        raise RetryableEffectError(f"the notice service answered {got.status_code}")
    if got.status_code >= 400:
        raise PermanentEffectError(f"the notice service refused it: {got.status_code}")
    ctx.author.command(CARDS, payload["card_id"], "noticed", {"earned": payload["earned"]})


HANDLERS: Mapping[str, EffectHandler] = {"reward_notice": reward_notice}
