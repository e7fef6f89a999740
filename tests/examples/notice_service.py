"""A real HTTP service, in its own process, standing in for the loyalty plugin's
notification provider: it counts every ``Idempotency-Key`` it sees and performs a notice
once per key (a key seen again gets the first answer back, as Stripe does).

    python -m tests.examples.notice_service [--fail-first N]

prints ``PORT <n>`` when it listens (port 0: the OS picks); ``--fail-first N`` answers the
first N requests 503 (after counting their keys), so a caller must retry. ``GET /state``
returns ``{"seen": {key: times}, "performed": [keys in order], "requests": n}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["main"]


class _State:
    def __init__(self, fail_first: int) -> None:
        self.lock = threading.Lock()
        self.fail_first = fail_first
        self.requests = 0
        self.seen: dict[str, int] = {}
        self.performed: list[str] = []


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with state.lock:
                body = {
                    "seen": dict(state.seen),
                    "performed": list(state.performed),
                    "requests": state.requests,
                }
            self._reply(200, body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            payload = json.loads(self.rfile.read(length) or b"null")
            key = self.headers.get("Idempotency-Key")
            if not key:
                self._reply(400, {"error": "an Idempotency-Key header is required"})
                return
            with state.lock:
                state.requests += 1
                state.seen[key] = state.seen.get(key, 0) + 1
                if state.requests <= state.fail_first:
                    failing = True
                else:
                    failing = False
                    if key not in state.performed:
                        state.performed.append(key)
            if failing:
                self._reply(503, {"error": "try again"})
                return
            self._reply(200, {"notice": key, "payload": payload})

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(_State(args.fail_first)))
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
