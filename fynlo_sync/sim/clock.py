"""Virtual time: one world clock that only moves when the simulator says so, and a wall
clock per terminal that drifts and jumps relative to it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EPOCH_MS", "TerminalClock", "VirtualTime"]

#: Where virtual time starts (2025-06-15, in Unix milliseconds).
EPOCH_MS = 1_750_000_000_000


@dataclass(slots=True)
class VirtualTime:
    """The world's true time in milliseconds."""

    now: int = EPOCH_MS

    def advance(self, ms: int) -> None:
        self.now += max(0, ms)


@dataclass(slots=True)
class TerminalClock:
    """A terminal's hardware clock: true time, plus a fixed offset (moved by jumps), plus a
    drift of ``ppm`` parts per million since ``since``. Call it for a reading: it is the
    ``wall`` the terminal's hybrid logical clock is built on. It survives a crash."""

    time: VirtualTime
    offset_ms: int = 0
    ppm: int = 0
    since: int = EPOCH_MS

    def __call__(self) -> int:
        now = self.time.now
        return max(0, now + self.offset_ms + (now - self.since) * self.ppm // 1_000_000)

    def jump(self, delta_ms: int) -> None:
        self.offset_ms += delta_ms

    def drift(self, ppm: int) -> None:
        # Fold the drift so far into the offset, so the reading does not jump.
        now = self.time.now
        self.offset_ms += (now - self.since) * self.ppm // 1_000_000
        self.since = now
        self.ppm = ppm
