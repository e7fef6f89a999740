"""Processes for the effect crash tests: the test service, and server processes that can
be SIGKILLed and restarted on the same listening socket (forked from the test process, so
a restart costs no interpreter start-up)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import httpx

from fynlo_sync.ops import Batch
from fynlo_sync.sim.effects import sent_order

__all__ = ["ServerProcess", "order_batch", "service", "stats", "wait_for", "workers"]

ROOT = Path(__file__).resolve().parents[2]


def wait_for(check: Any, what: str, timeout: float = 90.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


@contextmanager
def service() -> Iterator[str]:
    """The test service in its own process; yields its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.effects.service"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("port "), line
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait()


def stats(url: str) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = httpx.get(url + "/stats", timeout=10).json()["keys"]
    return found


def workers(url: str) -> dict[str, int]:
    found: dict[str, int] = httpx.get(url + "/stats", timeout=10).json()["workers"]
    return found


def _serve(env: Mapping[str, str], fd: int) -> None:
    os.environ.clear()
    os.environ.update(env)
    import uvicorn

    from server.app import app_from_env

    sock = socket.socket(fileno=fd)
    config = uvicorn.Config(app_from_env(), log_level="error", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


class ServerProcess:
    """A server process on a socket this test keeps open: :meth:`kill` SIGKILLs it (no
    shutdown of any kind), :meth:`start` forks a new one on the same port."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.proc: BaseProcess | None = None
        self.kills = 0

    def start(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self.proc = ctx.Process(target=_serve, args=(self.env, self.sock.fileno()), daemon=True)
        self.proc.start()
        wait_for(self._ready, "the server to start")

    def _ready(self) -> bool:
        try:
            return httpx.get(self.url + "/health/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None and self.proc.pid is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join()
        self.kills += 1

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.kill()
        self.sock.close()


def order_batch(node: str, index: int) -> Batch:
    """Order ``o<index>``: open, a line, sent to the kitchen (seqs 3*index+1 ..)."""
    return Batch.of(node, sent_order(node, index))
