"""``fynlo serve | migrate | tenant create | device enroll|revoke|list | effects list|retry``.

Every command reads its settings from the environment (``FYNLO_DATABASE_URL`` and friends,
see :mod:`server.settings`). ``--json`` prints one JSON object for scripts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.settings import Settings

__all__ = ["register"]

#: Every command here runs server code (litestar, argon2, anyio, ...).
NEEDS = ("server",)


def _settings(*, signs: bool = False) -> Settings:
    """The settings from the environment. Only a command that ``signs`` tokens needs
    FYNLO_SECRET_KEY; the admin commands work without it. A database or Redis URL whose
    extra is missing stops the command here (exit 2, naming the extra)."""
    from fynlo_sync.cli import require
    from server.settings import Settings

    if signs or os.environ.get("FYNLO_SECRET_KEY"):
        settings = Settings.from_env()
    else:
        settings = Settings.from_env({**os.environ, "FYNLO_ENV": "dev"})
    if settings.kind == "postgres":
        require("postgres")
    if settings.redis_url:
        require("redis")
    return settings


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, sort_keys=True) if args.json else text)


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from fynlo_sync.errors import FynloError

        try:
            return fn(args)
        except FynloError as exc:
            print(f"fynlo {args.command}: {exc.detail}", file=sys.stderr)
            return 2

    return run


def _serve(args: argparse.Namespace) -> int:
    if args.workers > 1:
        _metrics_folder()  # before anything imports prometheus_client (server.observe)
    import uvicorn

    from server import admin

    if args.dev:
        os.environ["FYNLO_ENV"] = "dev"
        # One key for every worker process (a per-process one would split them).
        os.environ.setdefault("FYNLO_SECRET_KEY", secrets.token_urlsafe(32))
    settings = _settings(signs=True)  # fail here, clearly, before uvicorn starts workers
    from server.app import registry_from

    registry_from(settings)  # and on a plugin's settings (the error names the variable)
    from server.pokes import pokes_backend

    if args.workers > 1 and pokes_backend(settings) == "memory":
        # Each worker would poke only its own sockets: terminals on the others would wait
        # for their timer. Refuse rather than split pokes silently.
        print(
            "fynlo serve: --workers > 1 on the embedded database would split pokes between "
            "the workers; set FYNLO_REDIS_URL, or use PostgreSQL (pokes then cross processes "
            "by LISTEN/NOTIFY), or run one worker",
            file=sys.stderr,
        )
        return 2
    if settings.migrate_on_start and args.workers > 1:
        admin.migrate(settings)  # once, before the workers race to
    from server.observe import configure_logging

    # This process's lines too (with several workers, uvicorn's supervisor logs here); each
    # worker configures its own in server.app.app_from_env.
    configure_logging(settings.log_format, settings.log_level)
    from server.serving import bind_public, listeners, uvicorn_options

    if settings.internal_port and settings.internal_port == args.port:
        print("fynlo serve: FYNLO_INTERNAL_PORT must differ from --port", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        "server.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=None,
        **uvicorn_options(settings, workers=args.workers),
    )
    # Bound here (not by uvicorn.run): with FYNLO_INTERNAL_PORT there are two listeners.
    try:
        public = bind_public(args.host, args.port)
    except OSError as exc:
        print(f"fynlo serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    sockets = listeners(settings, public)
    from uvicorn.supervisors import Multiprocess

    with contextlib.suppress(KeyboardInterrupt):
        if args.workers > 1:
            Multiprocess(config, sockets=sockets).run()
        else:
            uvicorn.Server(config).run(sockets=sockets)
    return 0


def _metrics_folder() -> str:
    """Several workers share their Prometheus figures through files (prometheus_client's
    multiprocess mode): ``PROMETHEUS_MULTIPROC_DIR``, made fresh when unset, emptied of a
    previous run's files when set. The workers inherit it."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        folder = tempfile.mkdtemp(prefix="fynlo-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith(".db"):
            os.remove(os.path.join(folder, name))
    return folder


def _migrate(args: argparse.Namespace) -> int:
    from server import admin

    settings = _settings()
    admin.migrate(settings)
    _print(args, {"migrated": True, "database": settings.kind}, "migrations applied")
    return 0


def _tenant_create(args: argparse.Namespace) -> int:
    from server import admin

    tenant = admin.create_tenant(_settings(), args.name, args.id)
    _print(args, {"tenant_id": tenant}, tenant)
    return 0


def _device_enroll(args: argparse.Namespace) -> int:
    from server import admin

    got = admin.enroll_device(_settings(), args.tenant, args.node, args.role)
    _print(
        args,
        {
            "tenant_id": got.tenant_id,
            "node_id": got.node_id,
            "enrollment_code": got.enrollment_code,
            "expires_ms": got.expires_ms,
        },
        f"node {got.node_id}: enrollment code {got.enrollment_code} (one use)",
    )
    return 0


def _device_revoke(args: argparse.Namespace) -> int:
    from server import admin

    admin.revoke_device(_settings(), args.tenant, args.node)
    _print(args, {"tenant_id": args.tenant, "node_id": args.node, "revoked": True}, "revoked")
    return 0


def _device_list(args: argparse.Namespace) -> int:
    from server import admin

    devices = admin.list_devices(_settings(), args.tenant)
    rows = [{"node_id": d.node_id, "role": d.role, "revoked": d.revoked} for d in devices]
    text = "\n".join(f"{d.node_id} {d.role}{' (revoked)' if d.revoked else ''}" for d in devices)
    _print(args, {"tenant_id": args.tenant, "devices": rows}, text)
    return 0


def _effect_json(row: Any) -> dict[str, Any]:
    return {
        "tenant_id": row.tenant,
        "key": row.key,
        "plugin": row.effect.plugin,
        "name": row.effect.name,
        "state": row.state,
        "attempts": row.attempts,
        "failures": row.failures,
        "due_ms": row.due_ms,
        "created_ms": row.created_ms,
        "last_error": row.last_error,
        "payload": dict(row.effect.payload),
        "history": [
            {
                "attempt": a.attempt,
                "started_ms": a.started_ms,
                "finished_ms": a.finished_ms,
                "result": a.result,
                "error": a.error,
            }
            for a in row.history
        ],
    }


def _effects_list(args: argparse.Namespace) -> int:
    from server import admin

    rows = admin.list_effects(_settings(), args.tenant, args.state)
    text = "\n".join(
        f"{r.tenant} {r.key} {r.state} attempts={r.attempts}"
        + (f" error={r.last_error}" if r.last_error else "")
        for r in rows
    )
    _print(args, {"effects": [_effect_json(r) for r in rows]}, text or "no effects")
    return 0


def _effects_retry(args: argparse.Namespace) -> int:
    from server import admin

    done = admin.retry_effect(_settings(), args.tenant, args.key)
    _print(
        args,
        {"tenant_id": args.tenant, "key": args.key, "retried": done},
        "due again" if done else "not dead (nothing to retry)",
    )
    return 0 if done else 1


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="run the sync server under uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--dev", action="store_true", help="FYNLO_ENV=dev: a throwaway key")
    serve.set_defaults(needs=NEEDS, func=_guarded(_serve))

    migrate = subparsers.add_parser("migrate", help="apply pending database migrations")
    migrate.add_argument("--json", action="store_true")
    migrate.set_defaults(needs=NEEDS, func=_guarded(_migrate))

    tenant = subparsers.add_parser("tenant", help="tenants (restaurants)")
    tenant_sub = tenant.add_subparsers(dest="action", required=True)
    create = tenant_sub.add_parser("create", help="create a tenant; prints its id")
    create.add_argument("name")
    create.add_argument("--id", default=None, help="the tenant id (default: made up)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(needs=NEEDS, func=_guarded(_tenant_create))

    device = subparsers.add_parser("device", help="devices (terminals)")
    device_sub = device.add_subparsers(dest="action", required=True)
    enroll = device_sub.add_parser("enroll", help="a one-use enrollment code for a device")
    enroll.add_argument("--tenant", required=True)
    enroll.add_argument("--node", default=None, help="the node id (default: made up)")
    enroll.add_argument(
        "--role",
        choices=("terminal", "manager"),
        default=None,
        help="terminal (a till; the default) or manager (may also list the tenant's effects)",
    )
    enroll.add_argument("--json", action="store_true")
    enroll.set_defaults(needs=NEEDS, func=_guarded(_device_enroll))
    revoke = device_sub.add_parser("revoke", help="cut a device off at once")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("--node", required=True)
    revoke.add_argument("--json", action="store_true")
    revoke.set_defaults(needs=NEEDS, func=_guarded(_device_revoke))
    listing = device_sub.add_parser("list", help="a tenant's devices")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(needs=NEEDS, func=_guarded(_device_list))

    effects = subparsers.add_parser("effects", help="durable effects (the outbox)")
    effects_sub = effects.add_subparsers(dest="action", required=True)
    elist = effects_sub.add_parser(
        "list", help="effects with every attempt (dead: failed for good)"
    )
    elist.add_argument("--tenant", help="only this tenant's")
    elist.add_argument("--state", choices=("pending", "running", "done", "dead"))
    elist.add_argument("--json", action="store_true")
    elist.set_defaults(needs=NEEDS, func=_guarded(_effects_list))
    eretry = effects_sub.add_parser("retry", help="make a dead effect due again")
    eretry.add_argument("--tenant", required=True)
    eretry.add_argument("key")
    eretry.add_argument("--json", action="store_true")
    eretry.set_defaults(needs=NEEDS, func=_guarded(_effects_retry))
