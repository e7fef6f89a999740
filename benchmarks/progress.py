"""Progress on stderr while the benchmarks run (stdout stays free for ``--json``)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Rate-limited progress lines. On a terminal a step overwrites the line; otherwise a
    step is printed at most every ``every`` seconds so logs stay short."""

    def __init__(self, stream: TextIO | None = None, *, total: int = 0, quiet: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.quiet = quiet
        self.index = 0
        self.label = ""
        self._last = 0.0
        self._open_line = False
        self.every = 0.2 if self.tty else 2.0

    def _write(self, text: str, *, transient: bool = False) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K" + text + ("" if transient else "\n"))
            self._open_line = transient
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, label: str) -> None:
        self.index += 1
        self.label = label
        self._last = 0.0
        self._write(f"[{self.index}/{self.total}] {label} ...")

    def step(self, done: int, total: int, what: str = "") -> None:
        now = time.monotonic()
        if now - self._last < self.every and done < total:
            return
        self._last = now
        pct = 100.0 * done / total if total else 100.0
        self._write(
            f"    {self.label}: {what} {done:,}/{total:,} ({pct:.0f}%)".rstrip(), transient=True
        )

    def note(self, text: str) -> None:
        self._write(f"    {text}")

    def done(self, text: str) -> None:
        self._write(f"    -> {text}")
