"""A free loopback port for a child process that must bind it itself (tests, demos,
benchmarks). Ranked below the server so that both the server's test helpers and the
sandbox's process runners use the one function."""

from __future__ import annotations

import random
import socket

__all__ = ["free_port"]


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections (Linux's
    ``ip_local_port_range``; 32768 where it cannot be read)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago, for a child process that must bind it itself.

    It is chosen below the kernel's ephemeral range: a port from ``bind(0)`` lies inside
    that range, so between this call and the child's bind any outgoing connection (a
    readiness poll, a proxy's upstream) could be given the same local port and hold it in
    ESTABLISHED or TIME_WAIT, and the child's ``bind`` fails with ``EADDRINUSE`` (seen in
    CI). Ports below the range are only ever taken by an explicit bind."""
    low = _ephemeral_low()
    first = 10_000 if low > 20_000 else 1024
    # Not the simulation's randomness: any free port will do, and two test processes
    # started together must not walk the same sequence.
    pick = random.SystemRandom()
    for _ in range(200):
        port = pick.randrange(first, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # nothing below: any
        sock.bind((host, 0))
        found: int = sock.getsockname()[1]
        return found
