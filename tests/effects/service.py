"""A real HTTP test service, run as its own process, standing in for a provider or a
kitchen printer: ``POST /call`` with an ``Idempotency-Key`` header performs a side effect
once per key (a repeated key is answered from the first result, as Stripe does) and counts
everything; ``GET /stats`` reports, per key, how many requests it saw, how many side
effects it performed, and how many requests overlapped another of the same key (and the
requests per ``X-Worker`` header: which server process made them).

    python -m tests.effects.service        # prints "port N" once it listens

Optional JSON body member ``delay_ms``: hold the request that long before answering (an
effect "in flight").
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Service", "main"]


class Service:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: dict[str, dict[str, int]] = {}
        self.active: dict[str, int] = {}
        #: Requests per ``X-Worker`` header (which server process called).
        self.workers: dict[str, int] = {}

    def call(self, key: str, delay_ms: int, worker: str) -> dict[str, Any]:
        with self.lock:
            entry = self.keys.setdefault(key, {"seen": 0, "effects": 0, "overlaps": 0})
            entry["seen"] += 1
            self.workers[worker] = self.workers.get(worker, 0) + 1
            if self.active.get(key, 0):
                entry["overlaps"] += 1
            self.active[key] = self.active.get(key, 0) + 1
        try:
            if delay_ms:
                time.sleep(delay_ms / 1000)
            with self.lock:
                first = entry["effects"] == 0
                if first:
                    entry["effects"] = 1  # the side effect, once per key
            return {"key": key, "replayed": not first}
        finally:
            with self.lock:
                self.active[key] -= 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "keys": {k: dict(v) for k, v in sorted(self.keys.items())},
                "workers": dict(sorted(self.workers.items())),
            }


def _handler(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/stats":
                self._send(200, service.stats())
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            key = self.headers.get("Idempotency-Key")
            if self.path != "/call" or not key:
                self._send(400, {"error": "POST /call needs an Idempotency-Key"})
                return
            worker = self.headers.get("X-Worker") or "?"
            self._send(200, service.call(key, int(body.get("delay_ms") or 0), worker))

    return Handler


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed mid-request (the server under test, SIGKILLed)


def main() -> None:
    server = _Quiet(("127.0.0.1", 0), _handler(Service()))
    server.daemon_threads = True
    print(f"port {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
