"""Transports: how a terminal reaches the server (loopback in-process, HTTP)."""

from fynlo_sync.transport.base import Transport
from fynlo_sync.transport.loopback import LoopbackTransport

__all__ = ["LoopbackTransport", "Transport"]
