"""Run an outside service as its own process on a free 127.0.0.1 port, for tests and demos.

localstripe is GPL: it is only ever run as a program (``python -m localstripe``), never
imported. Its state lives in the process (``--from-scratch``); it also writes a pickle to
``/tmp/localstripe.pickle`` that nothing here reads.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fynlo_sync.sandbox.ports import free_port

__all__ = [
    "ServiceProcess",
    "free_port",
    "localstripe_available",
    "run_localstripe",
    "run_process",
    "run_sandbox_bank",
]


def localstripe_available() -> bool:
    """Is localstripe installed for this interpreter (without importing it)?"""
    return importlib.util.find_spec("localstripe") is not None


class ServiceProcess:
    """A started child process and its base URL."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL (a crash)."""
        self.proc.kill()
        self.proc.wait(timeout=10)


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"nothing listened on {port}: {log.read_text()}") from None
            time.sleep(0.05)


@contextmanager
def run_process(
    argv: Sequence[str],
    port: int,
    log: Path,
    *,
    env: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> Iterator[ServiceProcess]:
    """Start ``argv`` (which must listen on ``port``), wait until it accepts connections,
    yield it, and stop it (terminate, then kill) at the end."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    try:
        _wait_for_port(proc, port, timeout_s, log)
        yield ServiceProcess(proc, f"http://127.0.0.1:{port}", log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@contextmanager
def run_localstripe(folder: Path) -> Iterator[ServiceProcess]:
    """localstripe on a free port (state from scratch), its log in ``folder``."""
    if not localstripe_available():
        raise RuntimeError("localstripe is not installed: pip install 'fynlo-sync[dev]'")
    port = free_port()
    argv = [sys.executable, "-m", "localstripe", "--port", str(port), "--from-scratch"]
    with run_process(argv, port, folder / f"localstripe-{port}.log") as service:
        yield service


@contextmanager
def run_sandbox_bank(
    folder: Path,
    *,
    webhook_url: str | None = None,
    api_key: str = "sandbox-key",
    webhook_secret: str = "sandbox-webhook-secret",
    settle_after_ms: int = 2000,
) -> Iterator[ServiceProcess]:
    """``fynlo sandbox bank`` as its own process on a free port, its log in ``folder``."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "fynlo_sync.cli",
        "sandbox",
        "bank",
        "--port",
        str(port),
        "--api-key",
        api_key,
        "--webhook-secret",
        webhook_secret,
        "--settle-after-ms",
        str(settle_after_ms),
    ]
    if webhook_url:
        argv += ["--webhook-url", webhook_url]
    with run_process(argv, port, folder / f"sandbox-bank-{port}.log") as service:
        yield service
