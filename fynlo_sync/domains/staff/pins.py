"""PIN guessing throttle, pure: the same rules on the server (online) and on a terminal
(offline, against its short-lived cached verifier).

A 4-digit PIN is one of 10,000. Each employee may fail at most ``max_failures`` times in any
rolling ``window_ms`` (10 in 24 h), so an attacker's odds of guessing it are at most
10 / 10,000 = 0.1% per day, however the attempts are spread; after ``free_failures``
consecutive failures each further attempt waits an exponentially growing delay
(30 s, 1 min, 2 min, ... capped at 1 h) so a burst is slow too. A device is throttled the
same way over every employee tried on it (30 in 24 h), against spraying one common PIN
across all staff. A success clears the consecutive count, never the window: a colleague's
sign-in does not hand the attacker fresh guesses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

__all__ = [
    "DEVICE_POLICY",
    "EMPLOYEE_POLICY",
    "PinPolicy",
    "Throttle",
    "after_failure",
    "after_success",
    "check_pin",
    "retry_after_ms",
]


@dataclass(frozen=True, slots=True)
class PinPolicy:
    max_failures: int
    window_ms: int = 24 * 3_600_000
    free_failures: int = 3
    base_delay_ms: int = 30_000
    max_delay_ms: int = 3_600_000


EMPLOYEE_POLICY: Final = PinPolicy(max_failures=10)
DEVICE_POLICY: Final = PinPolicy(max_failures=30, free_failures=5)


@dataclass(frozen=True, slots=True)
class Throttle:
    """One employee's (or device's) recent failures: their times (the last
    ``max_failures``, oldest first) and the current run of consecutive ones."""

    failures_ms: tuple[int, ...] = ()
    consecutive: int = 0


def check_pin(pin: object) -> str:
    """A PIN is 4 to 8 ASCII digits; raises ValueError otherwise."""
    if type(pin) is not str or not 4 <= len(pin) <= 8 or not (pin.isascii() and pin.isdigit()):
        raise ValueError("a PIN is 4 to 8 digits")
    return pin


def _delay(policy: PinPolicy, consecutive: int) -> int:
    over = consecutive - policy.free_failures + 1
    if over <= 0:
        return 0
    return min(policy.max_delay_ms, policy.base_delay_ms << min(over - 1, 40))


def retry_after_ms(throttle: Throttle, now_ms: int, policy: PinPolicy) -> int:
    """0 when an attempt may be made now, else how long to wait."""
    recent = [t for t in throttle.failures_ms if t > now_ms - policy.window_ms]
    waits = [0]
    if len(recent) >= policy.max_failures:
        waits.append(recent[-policy.max_failures] + policy.window_ms - now_ms)
    if throttle.failures_ms:
        waits.append(throttle.failures_ms[-1] + _delay(policy, throttle.consecutive) - now_ms)
    return max(waits)


def after_failure(throttle: Throttle, now_ms: int, policy: PinPolicy) -> Throttle:
    kept = [t for t in throttle.failures_ms if t > now_ms - policy.window_ms]
    kept.append(now_ms)
    return Throttle(tuple(kept[-policy.max_failures :]), throttle.consecutive + 1)


def after_success(throttle: Throttle) -> Throttle:
    return replace(throttle, consecutive=0)
