"""HttpTransport against a server that closes kept-alive connections between requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fynlo_sync.errors import TransportError
from fynlo_sync.protocol import PullPage, encode, page_checksum
from fynlo_sync.transport.http import HttpTransport, Tokens

EMPTY = encode(PullPage(since=0, cursor=0, more=False, changes=[], checksum=page_checksum([])))


class ClosesAfterEachResponse(BaseHTTPRequestHandler):
    """Answers the first request on a connection (HTTP/1.1, kept alive), and hangs up on
    the second without answering: a server whose keep-alive timer fired just as the client
    reused the pooled connection."""

    protocol_version = "HTTP/1.1"
    connections: list[int] = []  # noqa: RUF012 - shared by design, reset per test

    def setup(self) -> None:
        super().setup()
        self.connections.append(1)
        self.served = 0

    def do_GET(self) -> None:
        self.served += 1
        if self.served > 1:
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(EMPTY)))
        self.end_headers()
        self.wfile.write(EMPTY)

    do_POST = do_GET

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    ClosesAfterEachResponse.connections = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ClosesAfterEachResponse)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def transport(url: str) -> HttpTransport:
    return HttpTransport(url, Tokens("a", "r", "n1", "t1", 900))


def test_pull_survives_a_connection_closed_while_pooled(url: str) -> None:
    link = transport(url)
    for _ in range(3):
        assert link.pull(0, 10).changes == []
    assert len(ClosesAfterEachResponse.connections) == 3  # a fresh connection each time


def test_a_non_idempotent_request_is_not_resent(url: str) -> None:
    link = transport(url)
    link.get("/v1/conflicts")
    with pytest.raises(TransportError, match="RemoteProtocolError"):
        link.post("/v1/conflicts/x/resolve", {"choice": "server"})
    assert len(ClosesAfterEachResponse.connections) == 1
