"""``fynlo sandbox bank``: run the sandbox bank as its own process.

Only the standard library at import time: the server extra is imported by the handler."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    sandbox = subparsers.add_parser("sandbox", help="stand-ins for outside services")
    sub = sandbox.add_subparsers(dest="sandbox_command", required=True)
    bank = sub.add_parser(
        "bank",
        help="a UK open-banking payment API (TrueLayer v3 shape) with a consent page",
        description=(
            "Serve the sandbox bank: POST /v3/payments (Idempotency-Key), a consent page "
            "the customer's phone opens, HMAC-signed webhooks to --webhook-url, payments "
            "that expire after 15 minutes, and /_admin routes that move its clock."
        ),
    )
    bank.add_argument("--port", type=int, required=True, help="TCP port (0: any free one)")
    bank.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    bank.add_argument("--api-key", default="sandbox-key", help="bearer key for the API")
    bank.add_argument("--webhook-url", help="where to POST webhook events")
    bank.add_argument(
        "--webhook-secret", default="sandbox-webhook-secret", help="HMAC key of webhooks"
    )
    bank.add_argument("--public-url", help="base URL in consent links (default: the bind)")
    bank.add_argument(
        "--settle-after-ms", type=int, default=2000, help="executed -> settled (2000)"
    )
    bank.set_defaults(func=_bank, needs=("server",))


def _bank(args: argparse.Namespace) -> int:
    import socket

    import uvicorn

    from fynlo_sync.sandbox.bank.app import BankConfig, create_bank_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = BankConfig(
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        webhook_url=args.webhook_url,
        public_url=args.public_url or f"http://{args.host}:{port}",
        settle_after_ms=args.settle_after_ms,
    )
    print(f"sandbox bank on http://{args.host}:{port}", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(create_bank_app(config), log_level="warning", lifespan="on")
    )
    server.run(sockets=[sock])
    return 0
