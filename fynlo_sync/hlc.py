"""Hybrid logical clock (Kulkarni, Demirbas et al., 2014), packed in a 64-bit integer.

Layout: the high 48 bits are wall-clock milliseconds since the Unix epoch, the low 16 bits a
counter. Because the two parts are packed with the counter in the low bits, the paper's
case analysis collapses into integer arithmetic on the packed value::

    now():        l' = max(l + 1, pt << 16)
    update(m):    l' = max(l + 1, m + 1, pt << 16)

``l + 1`` with a full counter (0xFFFF) carries into the millisecond part: the clock runs
one millisecond ahead of the wall clock rather than overflowing, and catches up when the
wall clock passes it. A wall clock that goes backwards never moves the HLC backwards.

Ties between equal HLC values on different nodes break on ``node_id`` (byte order of the
UTF-8 string): use :func:`order_key`.

On the wire an HLC is 16 lowercase hexadecimal digits (:func:`to_wire`), never a JSON
number: today's values exceed 2**53 and would lose precision in JavaScript or Swift's
``Double``-backed JSON decoders. Fixed-width hex sorts as text the same way it sorts as a
number.
"""

from __future__ import annotations

from collections.abc import Callable

from fynlo_sync.errors import ClockError

__all__ = [
    "COUNTER_BITS",
    "COUNTER_MASK",
    "MAX_HLC",
    "HybridClock",
    "counter_of",
    "millis_of",
    "order_key",
    "pack",
    "from_wire",
    "to_wire",
    "WIRE_PATTERN",
]

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1
MAX_MILLIS = (1 << 48) - 1
MAX_HLC = (1 << 64) - 1
#: The default bound on how far a remote clock may run ahead of ours (5 minutes).
DEFAULT_MAX_DRIFT_MS = 5 * 60 * 1000


def pack(millis: int, counter: int) -> int:
    """Pack wall-clock milliseconds and a counter into one HLC value."""
    if not 0 <= millis <= MAX_MILLIS:
        raise ClockError(f"milliseconds {millis} outside 0..2**48-1", millis=millis)
    if not 0 <= counter <= COUNTER_MASK:
        raise ClockError(f"counter {counter} outside 0..65535", counter=counter)
    return (millis << COUNTER_BITS) | counter


WIRE_PATTERN = "^[0-9a-f]{16}$"


def to_wire(hlc: int) -> str:
    """The wire form: 16 lowercase hex digits."""
    _check_range(hlc)
    return f"{hlc:016x}"


def from_wire(text: str) -> int:
    """Parse the wire form; refuses anything but 16 lowercase hex digits."""
    if len(text) != 16 or text.strip("0123456789abcdef"):  # strip leaves any other char
        raise ClockError(f"HLC {text!r} is not 16 lowercase hex digits", hlc=text)
    return int(text, 16)


def millis_of(hlc: int) -> int:
    return hlc >> COUNTER_BITS


def counter_of(hlc: int) -> int:
    return hlc & COUNTER_MASK


def order_key(hlc: int, node_id: str) -> tuple[int, bytes]:
    """Total order over events: by HLC, ties broken by node_id's UTF-8 bytes."""
    return (hlc, node_id.encode("utf-8"))


class HybridClock:
    """A hybrid logical clock for one node.

    ``wall`` returns the current wall-clock time in integer milliseconds; it is injected so
    tests and the simulator control time. ``max_drift_ms`` bounds how far ahead of our wall
    clock a received timestamp may be before :meth:`update` refuses it (``None``: no bound).
    """

    __slots__ = ("_last", "_wall", "max_drift_ms")

    def __init__(
        self,
        wall: Callable[[], int],
        last: int = 0,
        max_drift_ms: int | None = DEFAULT_MAX_DRIFT_MS,
    ) -> None:
        _check_range(last)
        self._wall = wall
        self._last = last
        self.max_drift_ms = max_drift_ms

    @property
    def last(self) -> int:
        """The most recent value this clock produced or observed."""
        return self._last

    def _physical(self) -> int:
        pt = self._wall()
        if not 0 <= pt <= MAX_MILLIS:
            raise ClockError(f"wall clock reading {pt} outside 0..2**48-1", millis=pt)
        return pt << COUNTER_BITS

    def now(self) -> int:
        """A timestamp for a local or send event, strictly greater than any before it."""
        value = max(self._last + 1, self._physical())
        _check_range(value)
        self._last = value
        return value

    def update(self, remote: int) -> int:
        """Merge a received timestamp; returns the timestamp for the receive event."""
        _check_range(remote)
        physical = self._physical()
        if self.max_drift_ms is not None and (
            millis_of(remote) - millis_of(physical) > self.max_drift_ms
        ):
            raise ClockError(
                f"remote clock {millis_of(remote)} ms is more than {self.max_drift_ms} ms "
                f"ahead of the local wall clock {millis_of(physical)} ms",
                remote=remote,
            )
        value = max(self._last + 1, remote + 1, physical)
        _check_range(value)
        self._last = value
        return value


def _check_range(value: int) -> None:
    if not 0 <= value <= MAX_HLC:
        raise ClockError(f"HLC value {value} outside 0..2**64-1", hlc=value)
