"""Server settings: one frozen value, read from the environment once, at start-up.

=========================  ===========================================================
variable                   meaning (default)
=========================  ===========================================================
FYNLO_DATABASE_URL         ``sqlite:///path`` (embedded) or ``postgresql://...``
                           (``sqlite:///./fynlo.db``)
FYNLO_REDIS_URL            Redis for pokes between server processes (none: in-process)
FYNLO_SECRET_KEY           key that signs access tokens (required unless FYNLO_ENV=dev)
FYNLO_ENV                  ``prod`` or ``dev`` (``prod``); dev makes a throwaway key
FYNLO_ACCESS_TTL           access token lifetime, seconds (900)
FYNLO_REFRESH_TTL          refresh token lifetime, seconds (2592000 = 30 days)
FYNLO_ENROLLMENT_TTL       enrollment code lifetime, seconds (86400)
FYNLO_REFRESH_GRACE        seconds a rotated refresh token may be retried (its answer was
                           lost) without revoking the chain (30; 0: never)
FYNLO_REFRESH_MAX_LIFETIME longest life of a device's token chain from its enrollment,
                           seconds (15552000 = 180 days); then it enrolls again
FYNLO_MAX_BODY_BYTES       largest request body, bytes (8388608); larger gets 413
FYNLO_MAX_BATCH            most ops in one pushed batch (1000); more gets 413
FYNLO_MAX_PAGE             most changes in one pulled page (1000)
FYNLO_PG_POOL_MAX          PostgreSQL pool size per process (10)
FYNLO_LOG_FORMAT           ``json`` or ``console`` (``json``; ``console`` when FYNLO_ENV=dev)
FYNLO_LOG_LEVEL            ``debug``, ``info``, ``warning``, ``error`` (``info``)
FYNLO_SQLITE_BUSY_MS       how long an embedded write waits for the lock before answering
                           503 ``store-busy``, milliseconds (5000)
FYNLO_MIGRATE_ON_START     apply migrations at start-up, ``1``/``0`` (``1``)
FYNLO_PLUGINS              domain plugins, ``module:Class`` separated by commas
                           (``fynlo_sync.domains.orders:OrdersPlugin``)
FYNLO_REDIS_PREFIX         prefix of this deployment's Redis keys and channels (``FYNLO``)
FYNLO_PAGE_CACHE_MB        MiB of pull pages cached in each process (64; 0: none)
FYNLO_PAGE_CACHE_REDIS_TTL with FYNLO_REDIS_URL, pull pages are also cached in Redis for
                           all the processes, kept this many seconds (300; 0: not shared)
FYNLO_EFFECT_CONCURRENCY   effects performed at once per server process (100)
FYNLO_EFFECT_POLL_MS       how often the effect worker looks for due effects, ms (500)
FYNLO_EFFECT_LEASE_MS      how long a claimed effect is held before another worker may
                           re-run it, ms (60000)
FYNLO_EFFECT_TIMEOUT_MS    how long one attempt may run, ms (30000; below the lease)
FYNLO_EFFECT_BACKOFF_MS    wait after a first failure, ms, doubling per failure (1000)
FYNLO_EFFECT_BACKOFF_CAP_MS  longest wait between attempts, ms (300000)
FYNLO_EFFECT_MAX_FAILURES  failures in a row before an effect is dead (8)
FYNLO_<PLUGIN>_<FIELD>     a plugin's own settings (its ``settings_model``), validated at
                           start-up; see ``docs/plugins.md``
FYNLO_MAX_DEPTH            deepest JSON nesting of a request body (64); deeper gets 422
FYNLO_MAX_STRING_BYTES     longest string in an op, UTF-8 bytes (32768); longer gets 422
FYNLO_MAX_FIELD_BYTES      largest field value (or args) of an op, bytes (65536); 422
FYNLO_MAX_RECORD_BYTES     largest record after an op, bytes (262144); the op is rejected
FYNLO_MAX_PUSH_GROWTH      most feed bytes one push may add (16777216); more gets 413
FYNLO_MAX_PAGE_BYTES       most bytes of changes in one pulled page (4194304)
FYNLO_RATE_DEVICE          requests a minute one device may make (1200; 0: no limit)
FYNLO_RATE_TENANT          requests a minute all devices of one tenant may make (12000)
FYNLO_RATE_ANON            requests a minute one client address may make to /v1/auth/*
                           (120); behind a proxy, see docs/security.md (client address)
FYNLO_CODE_FAILURES        wrong secrets that lock an enrollment code (5)
FYNLO_WS_PER_DEVICE        poke sockets one device may hold open per process (4)
FYNLO_MAX_CLOCK_SKEW_MS    how far ahead of the server's clock an op's HLC may be, ms
                           (300000); further gets 422 clock-ahead
FYNLO_WS_RECHECK_MS        how often open poke sockets are checked for revocation, ms (1000)
FYNLO_INTERNAL_TOKEN       when set, /metrics and /schema need `Authorization: Bearer <it>`
                           (else they are public; see docs/security.md)
FYNLO_INTERNAL_PORT        when set, /metrics and /schema are served on this port only
                           (``FYNLO_INTERNAL_HOST``, default 127.0.0.1), not the public one
FYNLO_WS_TICKET_TTL        lifetime of a one-time WebSocket ticket, seconds (30; at most 300)
FYNLO_REQUEST_TIMEOUT      seconds a client has to send a request's headers and body (20)
FYNLO_MAX_CONNECTIONS      concurrent connections per server process (1000); then 503
=========================  ===========================================================
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from fynlo_sync.effects import RetryPolicy
from fynlo_sync.errors import SettingsError
from fynlo_sync.limits import DEFAULT_LIMITS, Limits
from fynlo_sync.plugin_loader import DEFAULT_PLUGINS, check_specs, plugin_specs

__all__ = ["Settings", "SettingsError"]


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} is below the minimum {minimum}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> Any:
    raw = (env.get(name) or default).lower()
    if raw not in allowed:
        raise SettingsError(f"{name}={raw!r}: use one of {', '.join(allowed)}")
    return raw


@dataclass(frozen=True)
class Settings:
    """Everything the server reads from outside. Build it with :meth:`from_env`, or
    directly in tests and embedding code (``Settings(database_url=..., secret_key=...)``)."""

    database_url: str = "sqlite:///./fynlo.db"
    redis_url: str | None = None
    secret_key: str = field(default="", repr=False)
    env: Literal["prod", "dev"] = "prod"
    access_ttl_s: int = 900
    refresh_ttl_s: int = 30 * 24 * 3600
    enrollment_ttl_s: int = 24 * 3600
    refresh_grace_s: int = 30
    refresh_max_lifetime_s: int = 180 * 24 * 3600
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch: int = 1000
    max_page: int = 1000
    #: Pull pages many terminals ask for again (a reconnect storm), kept in this process:
    #: at most this many MiB of page bodies; 0 turns the cache off.
    page_cache_mb: int = 64
    #: With ``redis_url``: seconds a page is kept in the cache the processes share through
    #: Redis (``server.shared_pages``); 0 keeps pages in each process only.
    page_cache_redis_ttl_s: int = 300
    pg_pool_max: int = 10
    sqlite_busy_ms: int = 5000
    log_format: Literal["json", "console"] = "json"
    log_level: str = "info"
    migrate_on_start: bool = True
    #: Prefix of the Redis keys and channels this deployment uses.
    redis_prefix: str = "FYNLO"
    #: The size and shape limits of ``docs/protocol.md`` section 22.
    max_depth: int = DEFAULT_LIMITS.max_depth
    max_string_bytes: int = DEFAULT_LIMITS.max_string_bytes
    max_field_bytes: int = DEFAULT_LIMITS.max_field_bytes
    max_record_bytes: int = DEFAULT_LIMITS.max_record_bytes
    max_push_growth_bytes: int = DEFAULT_LIMITS.max_push_growth_bytes
    max_page_bytes: int = DEFAULT_LIMITS.max_page_bytes
    #: Rate limits, requests a minute (0: off), and quotas.
    rate_device_per_min: int = 1200
    rate_tenant_per_min: int = 12000
    rate_anon_per_min: int = 120
    max_code_failures: int = 5
    max_sockets_per_device: int = 4
    #: Pushes of one tenant applied at once per process (0: no cap).
    max_pushes_in_flight_per_tenant: int = 16
    request_timeout_s: int = 20
    #: Bearer token for /metrics and /schema ("" : public).
    internal_token: str = field(default="", repr=False)
    #: A port (and host) serving /metrics and /schema alone (0: they are on the public port).
    internal_port: int = 0
    internal_host: str = "127.0.0.1"
    ws_ticket_ttl_s: int = 30
    ws_recheck_ms: int = 1000
    max_clock_skew_ms: int = 300_000
    max_connections: int = 1000
    #: Domain plugins to serve, as ``module:Class`` (each built by ``Class.from_env``).
    plugins: tuple[str, ...] = DEFAULT_PLUGINS
    effect_concurrency: int = 100
    effect_poll_ms: int = 500
    effect_lease_ms: int = 60_000
    effect_timeout_ms: int = 30_000
    effect_backoff_ms: int = 1_000
    effect_backoff_cap_ms: int = 300_000
    effect_max_failures: int = 8

    @property
    def effect_policy(self) -> RetryPolicy:
        try:
            return RetryPolicy(
                base_ms=self.effect_backoff_ms,
                cap_ms=self.effect_backoff_cap_ms,
                max_failures=self.effect_max_failures,
                lease_ms=self.effect_lease_ms,
                timeout_ms=self.effect_timeout_ms,
            )
        except ValueError as exc:
            raise SettingsError(f"FYNLO_EFFECT_*: {exc}") from None

    def __post_init__(self) -> None:
        self.effect_policy  # noqa: B018 - checks the effect settings at start-up
        if not self.secret_key:
            if self.env != "dev":
                raise SettingsError(
                    "FYNLO_SECRET_KEY is not set. Set it to a long random string (for example "
                    "the output of `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                    "), the same for every server process, or set FYNLO_ENV=dev to use a "
                    "throwaway key that dies with the process."
                )
            object.__setattr__(self, "secret_key", secrets.token_urlsafe(32))
        elif len(self.secret_key) < 32:
            raise SettingsError("FYNLO_SECRET_KEY is too short: use at least 32 characters")
        if self.access_ttl_s > 3600:
            raise SettingsError("FYNLO_ACCESS_TTL may be at most 3600 seconds (one hour)")
        if self.ws_ticket_ttl_s > 300:
            raise SettingsError("FYNLO_WS_TICKET_TTL may be at most 300 seconds")
        if not 0 <= self.internal_port <= 65535:
            raise SettingsError(f"FYNLO_INTERNAL_PORT={self.internal_port} is not a port")
        if self.refresh_grace_s > 300:
            raise SettingsError("FYNLO_REFRESH_GRACE may be at most 300 seconds")
        if self.refresh_max_lifetime_s < self.refresh_ttl_s:
            raise SettingsError("FYNLO_REFRESH_MAX_LIFETIME must be at least FYNLO_REFRESH_TTL")
        check_specs(self.plugins)
        try:
            self.limits  # noqa: B018 - validates the limits together
        except ValueError as exc:
            raise SettingsError(f"FYNLO_MAX_*: {exc}") from None
        if self.kind not in ("sqlite", "postgres"):
            raise SettingsError(
                f"FYNLO_DATABASE_URL must start with sqlite:/// or postgresql://, "
                f"not {self.database_url.split(':', 1)[0]!r}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        mode = env.get("FYNLO_ENV", "prod")
        if mode not in ("prod", "dev"):
            raise SettingsError(f"FYNLO_ENV={mode!r}: use 'prod' or 'dev'")
        return cls(
            database_url=env.get("FYNLO_DATABASE_URL") or cls.database_url,
            redis_url=env.get("FYNLO_REDIS_URL") or None,
            secret_key=env.get("FYNLO_SECRET_KEY", ""),
            env="dev" if mode == "dev" else "prod",
            access_ttl_s=_int(env, "FYNLO_ACCESS_TTL", cls.access_ttl_s),
            refresh_ttl_s=_int(env, "FYNLO_REFRESH_TTL", cls.refresh_ttl_s),
            enrollment_ttl_s=_int(env, "FYNLO_ENROLLMENT_TTL", cls.enrollment_ttl_s),
            refresh_grace_s=_int(env, "FYNLO_REFRESH_GRACE", cls.refresh_grace_s, 0),
            refresh_max_lifetime_s=_int(
                env, "FYNLO_REFRESH_MAX_LIFETIME", cls.refresh_max_lifetime_s
            ),
            max_body_bytes=_int(env, "FYNLO_MAX_BODY_BYTES", cls.max_body_bytes, 1024),
            max_batch=_int(env, "FYNLO_MAX_BATCH", cls.max_batch),
            max_page=_int(env, "FYNLO_MAX_PAGE", cls.max_page),
            page_cache_mb=_int(env, "FYNLO_PAGE_CACHE_MB", cls.page_cache_mb, minimum=0),
            page_cache_redis_ttl_s=_int(
                env, "FYNLO_PAGE_CACHE_REDIS_TTL", cls.page_cache_redis_ttl_s, minimum=0
            ),
            pg_pool_max=_int(env, "FYNLO_PG_POOL_MAX", cls.pg_pool_max),
            sqlite_busy_ms=_int(env, "FYNLO_SQLITE_BUSY_MS", cls.sqlite_busy_ms, 0),
            log_format=_choice(
                env, "FYNLO_LOG_FORMAT", ("json", "console"), "console" if mode == "dev" else "json"
            ),
            log_level=_choice(
                env, "FYNLO_LOG_LEVEL", ("debug", "info", "warning", "error"), cls.log_level
            ),
            migrate_on_start=env.get("FYNLO_MIGRATE_ON_START", "1") not in ("0", "false", "no"),
            redis_prefix=env.get("FYNLO_REDIS_PREFIX") or cls.redis_prefix,
            max_depth=_int(env, "FYNLO_MAX_DEPTH", cls.max_depth),
            max_string_bytes=_int(env, "FYNLO_MAX_STRING_BYTES", cls.max_string_bytes),
            max_field_bytes=_int(env, "FYNLO_MAX_FIELD_BYTES", cls.max_field_bytes),
            max_record_bytes=_int(env, "FYNLO_MAX_RECORD_BYTES", cls.max_record_bytes),
            max_push_growth_bytes=_int(env, "FYNLO_MAX_PUSH_GROWTH", cls.max_push_growth_bytes),
            max_page_bytes=_int(env, "FYNLO_MAX_PAGE_BYTES", cls.max_page_bytes),
            rate_device_per_min=_int(env, "FYNLO_RATE_DEVICE", cls.rate_device_per_min, 0),
            rate_tenant_per_min=_int(env, "FYNLO_RATE_TENANT", cls.rate_tenant_per_min, 0),
            rate_anon_per_min=_int(env, "FYNLO_RATE_ANON", cls.rate_anon_per_min, 0),
            max_code_failures=_int(env, "FYNLO_CODE_FAILURES", cls.max_code_failures),
            max_sockets_per_device=_int(env, "FYNLO_WS_PER_DEVICE", cls.max_sockets_per_device),
            max_pushes_in_flight_per_tenant=_int(
                env, "FYNLO_PUSHES_IN_FLIGHT", cls.max_pushes_in_flight_per_tenant, 0
            ),
            request_timeout_s=_int(env, "FYNLO_REQUEST_TIMEOUT", cls.request_timeout_s),
            internal_token=env.get("FYNLO_INTERNAL_TOKEN", ""),
            internal_port=_int(env, "FYNLO_INTERNAL_PORT", cls.internal_port, 0),
            internal_host=env.get("FYNLO_INTERNAL_HOST") or cls.internal_host,
            ws_ticket_ttl_s=_int(env, "FYNLO_WS_TICKET_TTL", cls.ws_ticket_ttl_s),
            ws_recheck_ms=_int(env, "FYNLO_WS_RECHECK_MS", cls.ws_recheck_ms, 50),
            max_clock_skew_ms=_int(env, "FYNLO_MAX_CLOCK_SKEW_MS", cls.max_clock_skew_ms, 1000),
            max_connections=_int(env, "FYNLO_MAX_CONNECTIONS", cls.max_connections),
            plugins=plugin_specs(env),
            effect_concurrency=_int(env, "FYNLO_EFFECT_CONCURRENCY", cls.effect_concurrency),
            effect_poll_ms=_int(env, "FYNLO_EFFECT_POLL_MS", cls.effect_poll_ms),
            effect_lease_ms=_int(env, "FYNLO_EFFECT_LEASE_MS", cls.effect_lease_ms),
            effect_timeout_ms=_int(env, "FYNLO_EFFECT_TIMEOUT_MS", cls.effect_timeout_ms),
            effect_backoff_ms=_int(env, "FYNLO_EFFECT_BACKOFF_MS", cls.effect_backoff_ms),
            effect_backoff_cap_ms=_int(
                env, "FYNLO_EFFECT_BACKOFF_CAP_MS", cls.effect_backoff_cap_ms
            ),
            effect_max_failures=_int(env, "FYNLO_EFFECT_MAX_FAILURES", cls.effect_max_failures),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that :meth:`from_env` turns back into these settings (for
        worker processes and subprocesses)."""
        out = {
            "FYNLO_DATABASE_URL": self.database_url,
            "FYNLO_SECRET_KEY": self.secret_key,
            "FYNLO_ENV": self.env,
            "FYNLO_ACCESS_TTL": str(self.access_ttl_s),
            "FYNLO_REFRESH_TTL": str(self.refresh_ttl_s),
            "FYNLO_ENROLLMENT_TTL": str(self.enrollment_ttl_s),
            "FYNLO_REFRESH_GRACE": str(self.refresh_grace_s),
            "FYNLO_REFRESH_MAX_LIFETIME": str(self.refresh_max_lifetime_s),
            "FYNLO_MAX_BODY_BYTES": str(self.max_body_bytes),
            "FYNLO_MAX_BATCH": str(self.max_batch),
            "FYNLO_MAX_PAGE": str(self.max_page),
            "FYNLO_PAGE_CACHE_MB": str(self.page_cache_mb),
            "FYNLO_PAGE_CACHE_REDIS_TTL": str(self.page_cache_redis_ttl_s),
            "FYNLO_PG_POOL_MAX": str(self.pg_pool_max),
            "FYNLO_SQLITE_BUSY_MS": str(self.sqlite_busy_ms),
            "FYNLO_LOG_FORMAT": self.log_format,
            "FYNLO_LOG_LEVEL": self.log_level,
            "FYNLO_MIGRATE_ON_START": "1" if self.migrate_on_start else "0",
            "FYNLO_REDIS_PREFIX": self.redis_prefix,
            "FYNLO_MAX_DEPTH": str(self.max_depth),
            "FYNLO_MAX_STRING_BYTES": str(self.max_string_bytes),
            "FYNLO_MAX_FIELD_BYTES": str(self.max_field_bytes),
            "FYNLO_MAX_RECORD_BYTES": str(self.max_record_bytes),
            "FYNLO_MAX_PUSH_GROWTH": str(self.max_push_growth_bytes),
            "FYNLO_MAX_PAGE_BYTES": str(self.max_page_bytes),
            "FYNLO_RATE_DEVICE": str(self.rate_device_per_min),
            "FYNLO_RATE_TENANT": str(self.rate_tenant_per_min),
            "FYNLO_RATE_ANON": str(self.rate_anon_per_min),
            "FYNLO_CODE_FAILURES": str(self.max_code_failures),
            "FYNLO_WS_PER_DEVICE": str(self.max_sockets_per_device),
            "FYNLO_PUSHES_IN_FLIGHT": str(self.max_pushes_in_flight_per_tenant),
            "FYNLO_REQUEST_TIMEOUT": str(self.request_timeout_s),
            "FYNLO_WS_RECHECK_MS": str(self.ws_recheck_ms),
            "FYNLO_WS_TICKET_TTL": str(self.ws_ticket_ttl_s),
            "FYNLO_INTERNAL_PORT": str(self.internal_port),
            "FYNLO_INTERNAL_HOST": self.internal_host,
            "FYNLO_MAX_CLOCK_SKEW_MS": str(self.max_clock_skew_ms),
            "FYNLO_MAX_CONNECTIONS": str(self.max_connections),
            "FYNLO_PLUGINS": ",".join(self.plugins),
            "FYNLO_EFFECT_CONCURRENCY": str(self.effect_concurrency),
            "FYNLO_EFFECT_POLL_MS": str(self.effect_poll_ms),
            "FYNLO_EFFECT_LEASE_MS": str(self.effect_lease_ms),
            "FYNLO_EFFECT_TIMEOUT_MS": str(self.effect_timeout_ms),
            "FYNLO_EFFECT_BACKOFF_MS": str(self.effect_backoff_ms),
            "FYNLO_EFFECT_BACKOFF_CAP_MS": str(self.effect_backoff_cap_ms),
            "FYNLO_EFFECT_MAX_FAILURES": str(self.effect_max_failures),
        }
        if self.redis_url:
            out["FYNLO_REDIS_URL"] = self.redis_url
        if self.internal_token:
            out["FYNLO_INTERNAL_TOKEN"] = self.internal_token
        return out

    @property
    def limits(self) -> Limits:
        return Limits(
            max_depth=self.max_depth,
            max_string_bytes=self.max_string_bytes,
            max_field_bytes=self.max_field_bytes,
            max_record_bytes=self.max_record_bytes,
            max_push_growth_bytes=self.max_push_growth_bytes,
            max_page_bytes=self.max_page_bytes,
        )

    @property
    def kind(self) -> str:
        """``sqlite`` or ``postgres``."""
        if self.database_url.startswith("sqlite:///"):
            return "sqlite"
        if self.database_url.startswith(("postgresql://", "postgres://", "postgresql+asyncpg://")):
            return "postgres"
        return "unknown"

    @property
    def sqlite_path(self) -> str:
        """The file of an embedded database (``sqlite:///./fynlo.db`` -> ``./fynlo.db``;
        ``sqlite:////abs/x.db`` -> ``/abs/x.db``)."""
        return self.database_url[len("sqlite:///") :]

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
