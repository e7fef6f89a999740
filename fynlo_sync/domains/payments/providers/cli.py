"""``fynlo payments apple-pay register-domain DOMAIN``: register a pay-at-table domain for
Apple Pay through Stripe's payment method domains API.

Reads ``FYNLO_PROVIDERS_STRIPE_SECRET_KEY`` and, to talk to another Stripe (a test
stand-in), ``FYNLO_PROVIDERS_STRIPE_API_BASE``. Only the standard library at import time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any

__all__ = ["register"]

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def register(subparsers: Any) -> None:
    payments = subparsers.add_parser("payments", help="payment provider set-up")
    sub = payments.add_subparsers(dest="payments_command", required=True)
    apple = sub.add_parser("apple-pay", help="Apple Pay through Stripe")
    apple_sub = apple.add_subparsers(dest="apple_pay_command", required=True)
    reg = apple_sub.add_parser(
        "register-domain",
        help="register a domain that serves the pay-at-table page",
        description=(
            "Register DOMAIN with Stripe (POST /v1/payment_method_domains) so Apple Pay "
            "works on the pay-at-table page it serves. The server must also serve "
            "/.well-known/apple-developer-merchantid-domain-association "
            "(FYNLO_PROVIDERS_APPLE_PAY_ASSOCIATION). Needs FYNLO_PROVIDERS_STRIPE_SECRET_KEY."
        ),
    )
    reg.add_argument("domain", help="for example pay.example.com (no scheme, no path)")
    reg.add_argument("--json", action="store_true", help="print Stripe's answer as JSON")
    reg.set_defaults(func=_register_domain, needs=("payments",))


def _register_domain(args: argparse.Namespace) -> int:
    import asyncio

    from fynlo_sync.domains.payments.providers import ProviderError
    from fynlo_sync.domains.payments.providers.stripe_cards import StripeProvider

    domain = args.domain.strip().lower()
    if not _DOMAIN.match(domain):
        print(f"fynlo payments: {args.domain!r} is not a domain name", file=sys.stderr)
        return 2
    key = os.environ.get("FYNLO_PROVIDERS_STRIPE_SECRET_KEY", "")
    if not key:
        print("fynlo payments: FYNLO_PROVIDERS_STRIPE_SECRET_KEY is not set", file=sys.stderr)
        return 2
    base = os.environ.get("FYNLO_PROVIDERS_STRIPE_API_BASE") or None

    async def call() -> dict[str, Any]:
        provider = StripeProvider(key, api_base=base)
        try:
            return await provider.register_domain(domain)
        finally:
            await provider.aclose()

    try:
        answer = asyncio.run(call())
    except ProviderError as exc:
        print(f"fynlo payments: {exc.detail}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
    else:
        status = (answer.get("apple_pay") or {}).get("status", "unknown")
        print(f"{answer.get('domain_name')}: registered as {answer.get('id')}, apple_pay {status}")
    return 0
