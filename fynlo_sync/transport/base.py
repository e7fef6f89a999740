"""The transport port. A transport raises :class:`~fynlo_sync.errors.TransportError` when
the network fails (retry), and the server's typed :class:`~fynlo_sync.errors.PeerError`
when the server refused the request (do not retry blindly)."""

from __future__ import annotations

from typing import Protocol

from fynlo_sync.ops import Batch
from fynlo_sync.protocol import PullPage, PushResult

__all__ = ["Transport"]


class Transport(Protocol):
    """A terminal's link. A transport may also offer ``pull_rows(since, limit, *, compact,
    node_id) -> PageRows``: :func:`fynlo_sync.protocol.decode_page_rows` of the page
    :meth:`pull` would decode (the same checks and errors); the terminal then stores the
    records' bytes as received. Without it the terminal uses :meth:`pull`.

    A transport whose :meth:`push` may run on another thread than the terminal's says so
    with a class attribute ``pipelined = True``: the terminal then pushes on a worker
    thread (still one push at a time, each sent after the last one's answer) and prepares
    the next batch meanwhile."""

    def push(self, batch: Batch) -> PushResult: ...

    def pull(self, since: int, limit: int, *, compact: bool = False) -> PullPage:
        """A page whose checksum was verified over the bytes received
        (:func:`fynlo_sync.protocol.decode_page`); a mismatch raises
        :class:`~fynlo_sync.errors.ChecksumMismatchError`. ``compact`` asks for a compacted
        page (``docs/protocol.md`` section 23); a server that does not speak 1.1 answers a
        feed page."""
        ...
