"""One error root, split by whose fault it is.

* :class:`CallerError`: the code calling this library asked for something invalid
  (a float in a money field, a command the state table forbids, an unknown collection).
* :class:`PeerError`: the other side of a sync sent something invalid (a wrong checksum,
  a seq gap, an unknown protocol version). These map to RFC 9457 problem details over
  HTTP; ``type_uri`` is stable and documented in ``docs/protocol.md``.
* :class:`StoreError`: the storage layer failed or found itself in a state it cannot be in.
* :class:`TransportError`: the network failed; the operation may be retried.

Every error has a ``code`` (a short stable slug) and a ``detail`` (a sentence for humans).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BatchTooLargeError",
    "CallerError",
    "ChecksumMismatchError",
    "ClockAheadError",
    "ClockError",
    "ConflictNotFoundError",
    "FynloError",
    "IllegalTransitionError",
    "InvalidValueError",
    "LimitExceededError",
    "MalformedError",
    "MissingDependencyError",
    "NodeMismatchError",
    "PeerError",
    "ProtocolVersionError",
    "RateLimitedError",
    "RejectedOpError",
    "SeqGapError",
    "SeqReuseError",
    "ServerError",
    "SettingsError",
    "StoreBusyError",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
    "TransportError",
    "UnauthenticatedError",
    "UnknownCollectionError",
    "UnknownCommandError",
    "PROBLEM_BASE",
]

PROBLEM_BASE = "https://fynlo.dev/problems/"


class FynloError(Exception):
    """Root of every error raised by fynlo_sync."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 500

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra: dict[str, Any] = dict(sorted(extra.items()))

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.code

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem details object for this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": type(self).__name__,
            "status": self.status,
            "detail": self.detail,
        }
        body.update(self.extra)
        return body


class CallerError(FynloError):
    """The caller asked for something invalid. Nothing was written."""

    code = "invalid-request"
    status = 400


class PeerError(FynloError):
    """The remote side sent something invalid. Nothing was applied."""

    code = "bad-peer-input"
    status = 400


class StoreError(FynloError):
    """The store failed or is inconsistent. A driver's error (``sqlite3``, ``asyncpg``)
    arrives as this or one of the subclasses below, the driver's error chained as
    ``__cause__`` (:mod:`fynlo_sync.store.driver`)."""

    code = "store-error"
    status = 500


class StoreBusyError(StoreError):
    """The database is locked by another writer, or a lock wait or statement timed out.
    Nothing was written; retry shortly."""

    code = "store-busy"
    status = 503


class StoreFullError(StoreError):
    """The disk, or the database's space, is full. Nothing was written; an operator must
    free space."""

    code = "store-full"
    status = 507


class StoreUnavailableError(StoreError):
    """The connection to the database was lost or cannot be made (or the file cannot be
    opened). Nothing more was written; retry once it is back."""

    code = "store-unavailable"
    status = 503


class TransportError(FynloError):
    """The network failed. Retrying is safe: every push is idempotent."""

    code = "transport-error"
    status = 503


class ServerError(TransportError):
    """The server answered 5xx: its store was busy (``store-busy``), full (``store-full``)
    or unreachable (``store-unavailable``), or it failed (``internal-error``). ``code`` and
    ``status`` are the server's; ``retry_after_s`` is its ``Retry-After`` (or ``None``).
    A :class:`TransportError`, so a terminal backs off and retries."""

    def __init__(
        self, detail: str, code: str, status: int, retry_after_s: int | None = None, **extra: Any
    ) -> None:
        super().__init__(detail, **extra)
        self.code = code  # type: ignore[misc]
        self.status = status  # type: ignore[misc]
        self.retry_after_s = retry_after_s


class MissingDependencyError(FynloError, ImportError):
    """An optional dependency is not installed; the message names the extra."""

    code = "missing-dependency"

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"the package {package!r} is not installed; install it with "
            f"`pip install 'fynlo-sync[{extra}]'`",
            package=package,
            extra=extra,
        )


class SettingsError(CallerError):
    """A setting (of the server or of a plugin) is missing or invalid; the message names
    the environment variable and says how to fix it."""

    code = "settings"


class ClockError(CallerError):
    """A hybrid logical clock value is out of range or too far ahead."""

    code = "clock"


class MalformedError(PeerError):
    """A message is not valid JSON of the expected shape (missing field, wrong type)."""

    code = "malformed"
    status = 422


class InvalidValueError(MalformedError):
    """A value is not allowed: a float, a non-finite number, an integer beyond 2**53-1."""

    code = "invalid-value"


class LimitExceededError(MalformedError):
    """A message breaks a size or shape limit (``docs/protocol.md`` section 22): ``limit``
    names which (``depth``, ``string_bytes``, ``field_bytes``), ``max`` its value, ``path``
    where (when known)."""

    code = "limit-exceeded"


class ClockAheadError(PeerError):
    """An op's HLC is further ahead of the server's clock than the skew allowance: the
    terminal's wall clock is wrong. Nothing was applied; retry later (the op becomes
    acceptable once real time catches up) and fix the clock."""

    code = "clock-ahead"
    status = 422


class RateLimitedError(PeerError):
    """Too many requests: wait ``retry_after`` seconds (also the ``Retry-After`` header)."""

    code = "rate-limited"
    status = 429


class ProtocolVersionError(PeerError):
    """The message names a protocol version this side does not speak."""

    code = "protocol-version"
    status = 400


class ChecksumMismatchError(PeerError):
    """The batch's MD5 does not match the canonical bytes of its ops."""

    code = "checksum-mismatch"
    status = 422


class SeqGapError(PeerError):
    """The first new op of a batch is not the node's next seq. ``expected`` says which is."""

    code = "seq-gap"
    status = 409


class SeqReuseError(PeerError):
    """A seq that was already applied arrives with a different op_id."""

    code = "seq-reuse"
    status = 409


class NodeMismatchError(PeerError):
    """An op names a node other than the batch's (or the authenticated device's)."""

    code = "node-mismatch"
    status = 403


class UnauthenticatedError(PeerError):
    """No valid credentials: a missing, expired, tampered or revoked token, a used or
    expired enrollment code, or a reused refresh token. Enroll or refresh, then retry."""

    code = "unauthenticated"
    status = 401


class BatchTooLargeError(PeerError):
    """The batch has more ops than the limit."""

    code = "batch-too-large"
    status = 413


class RejectedOpError(CallerError):
    """A local write was refused by the rules; ``reason`` is the rejection code."""

    code = "rejected"
    status = 422


class UnknownCollectionError(RejectedOpError):
    code = "unknown-collection"


class UnknownCommandError(RejectedOpError):
    code = "unknown-command"


class IllegalTransitionError(RejectedOpError):
    code = "illegal-transition"


class ForbiddenError(CallerError):
    """A route's actor (the employee a device names) lacks the permission it needs, or is
    not an active employee: 403, the ``permission`` member names it (protocol 20.1)."""

    code = "forbidden"
    status = 403


class ConflictNotFoundError(CallerError):
    code = "conflict-not-found"
    status = 404
