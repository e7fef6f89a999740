"""PIN sign-in on a terminal: online through the server, offline against a short-lived
verifier cached from a recent online sign-in on this device, the same throttle locally,
failed offline attempts reported at the next sync, and an idle timeout on the session.

The signed-in employee becomes the terminal's ``actor`` (every op it makes carries it);
signing out, or the session timing out, makes ops device-level again. argon2-cffi is
imported only when an offline verification runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fynlo_sync.client import Terminal
from fynlo_sync.domains.staff.pins import (
    EMPLOYEE_POLICY,
    Throttle,
    after_failure,
    after_success,
    retry_after_ms,
)
from fynlo_sync.errors import CallerError, TransportError

__all__ = ["OfflinePinError", "StaffSession", "TerminalSignIn"]


class OfflinePinError(CallerError):
    """The PIN could not be checked offline: wrong, locked, or no fresh verifier here."""

    code = "pin-refused"
    status = 403


@dataclass
class StaffSession:
    employee_id: str
    permissions: frozenset[str]
    idle_ms: int
    last_ms: int

    def expired(self, now_ms: int) -> bool:
        return now_ms - self.last_ms >= self.idle_ms


@dataclass
class _Cached:
    verifier: str
    expires_ms: int
    permissions: frozenset[str]
    idle_ms: int


@dataclass
class TerminalSignIn:
    """Sign-in for one terminal. ``transport`` is its HTTP transport (``post``)."""

    terminal: Terminal
    transport: Any
    now_ms: Callable[[], int]
    session: StaffSession | None = None
    _cache: dict[str, _Cached] = field(default_factory=dict)
    _throttles: dict[str, Throttle] = field(default_factory=dict)
    _failures: list[tuple[str, int]] = field(default_factory=list)

    def sign_in(self, employee_id: str, pin: str) -> StaffSession:
        """Online if the server answers; offline (cached verifier) if it cannot be reached."""
        try:
            got = self.transport.post(
                "/v1/plugins/staff/sign-in", {"employee_id": employee_id, "pin": pin}
            )
        except TransportError:
            return self._offline(employee_id, pin)
        cached = _Cached(
            got["offline_verifier"],
            got["offline_expires_ms"],
            frozenset(got["permissions"]),
            got["session_idle_s"] * 1000,
        )
        self._cache[employee_id] = cached
        return self._start(employee_id, cached)

    def _start(self, employee_id: str, cached: _Cached) -> StaffSession:
        self.session = StaffSession(employee_id, cached.permissions, cached.idle_ms, self.now_ms())
        self.terminal.actor = employee_id
        return self.session

    def _offline(self, employee_id: str, pin: str) -> StaffSession:
        now = self.now_ms()
        throttle = self._throttles.get(employee_id, Throttle())
        wait = retry_after_ms(throttle, now, EMPLOYEE_POLICY)
        if wait > 0:
            raise OfflinePinError(f"too many wrong PINs: try again in {(wait + 999) // 1000} s")
        cached = self._cache.get(employee_id)
        if cached is None or cached.expires_ms <= now:
            raise OfflinePinError("offline, and this employee has not signed in here lately")
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        try:
            PasswordHasher().verify(cached.verifier, pin)
        except (VerificationError, InvalidHashError):
            self._throttles[employee_id] = after_failure(throttle, now, EMPLOYEE_POLICY)
            self._failures.append((employee_id, now))
            raise OfflinePinError("wrong PIN") from None
        self._throttles[employee_id] = after_success(throttle)
        return self._start(employee_id, cached)

    def touch(self) -> None:
        """Call on each action: it keeps the session alive, or ends it if it timed out."""
        if self.session is None:
            return
        now = self.now_ms()
        if self.session.expired(now):
            self.sign_out()
        else:
            self.session.last_ms = now

    def sign_out(self) -> None:
        self.session = None
        self.terminal.actor = None

    def report_failures(self) -> int:
        """Send the failed offline attempts (call at sync); kept if the server is away."""
        if not self._failures:
            return 0
        body = {"failures": [{"employee_id": e, "at_ms": t} for e, t in self._failures]}
        got = self.transport.post("/v1/plugins/staff/failures", body)
        self._failures.clear()
        counted: int = got["counted"]
        return counted
