"""The blind port: a JavaScript terminal written from docs/protocol.md alone, run against
the real server started the documented way (the `fynlo` CLI, SQLite, a socket)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "examples" / "ports" / "blind" / "client.mjs"
VECTORS = ROOT / "docs" / "protocol" / "vectors"
FYNLO = Path(sys.executable).parent / "fynlo"
PROBLEMS = "https://fynlo.dev/problems/"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        message = "node is not on PATH: install Node.js 20 to run the blind JavaScript port"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return node


def _free_port() -> int:
    """A free port below the kernel's ephemeral range (32768 up), so no outgoing
    connection can be handed it before the server binds it."""
    import random

    for _ in range(200):
        port = random.SystemRandom().randrange(10_000, 32_768)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768")


@dataclass(frozen=True)
class Server:
    base_url: str
    env: dict[str, str]
    tenant_id: str
    workdir: Path

    def cli(self, *args: str) -> dict[str, Any]:
        done = subprocess.run(
            [str(FYNLO), *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def enrollment_code(self, node_id: str) -> str:
        made = self.cli("device", "enroll", "--tenant", self.tenant_id, "--node", node_id)
        assert made["node_id"] == node_id
        code: str = made["enrollment_code"]
        return code


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    _node()
    workdir = tmp_path_factory.mktemp("blind")
    env = dict(os.environ)
    env["FYNLO_DATABASE_URL"] = f"sqlite:///{workdir / 'fynlo.db'}"
    env["FYNLO_SECRET_KEY"] = secrets.token_hex(32)
    env.pop("FYNLO_REDIS_URL", None)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    tenant = Server(base_url, env, "", workdir).cli("tenant", "create", "Blind Bistro")
    log = (workdir / "serve.log").open("w")
    proc = subprocess.Popen(
        [str(FYNLO), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_up(base_url, proc)
        yield Server(base_url, env, tenant["tenant_id"], workdir)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_until_up(base_url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"fynlo serve exited with {proc.returncode}")
        try:
            urllib.request.urlopen(base_url + "/v1/sync/pull", timeout=1)
        except urllib.error.HTTPError as err:
            if err.code == 401:  # up, and refusing a request without a token
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("fynlo serve did not come up within 30 s")


def js(*args: str, ok: bool = True) -> dict[str, Any]:
    done = subprocess.run(
        [_node(), str(CLIENT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    if ok:
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result
    assert done.returncode != 0, done.stdout
    failure: dict[str, Any] = json.loads(done.stderr.strip().splitlines()[-1])
    return failure


def test_the_port_passes_every_vector_it_implements() -> None:
    summary = js("vectors", str(VECTORS))
    assert summary["failures"] == []
    files = summary["results"]
    assert set(files) == {
        "canonical.json",
        "checksum.json",
        "hlc.json",
        "conflicts.json",
        "orders_state.json",
        "push.json",
    }
    for name, tally in files.items():
        on_disk = json.loads((VECTORS / name).read_text())
        assert tally == {"passed": len(on_disk), "failed": 0}, name


def test_a_terminal_from_the_spec_syncs_and_a_second_converges(server: Server) -> None:
    a_state = str(server.workdir / "till-a.json")
    b_state = str(server.workdir / "till-b.json")

    code = server.enrollment_code("till-a")
    enrolled = js("enroll", "--state", a_state, "--base-url", server.base_url, "--code", code)
    assert enrolled == {
        "mode": "enroll",
        "node_id": "till-a",
        "tenant_id": server.tenant_id,
        "token_type": "Bearer",
    }
    refused = js(
        "enroll",
        "--state",
        a_state + ".again",
        "--base-url",
        server.base_url,
        "--code",
        code,
        ok=False,
    )
    assert refused["problem"]["type"] == PROBLEMS + "unauthenticated"
    assert refused["problem"]["status"] == 401

    a = js("scenario", "--state", a_state, "--order-id", "o-17")
    assert a["unauthenticated"] == {
        "status": 401,
        "type": PROBLEMS + "unauthenticated",
        "www_authenticate": "Bearer",
    }
    assert a["refresh"]["rotated"] is True
    assert a["local_refusal"] == {"reason": "duplicate-line", "seq_consumed": False}
    assert [w.get("seq") for w in a["writes"]] == [1, 2, None, 3, 4, 5, 6, 7]

    first, *rest = a["pushes"]
    assert first["seqs"] == [1, 2, 3]
    assert first["statuses"] == ["applied"] * 3
    assert (first["high_water"], first["cursor"]) == (3, 3)
    assert a["replay"]["statuses"] == ["duplicate"] * 3
    assert a["replay"]["originals"] == ["applied"] * 3
    assert (a["replay"]["high_water"], a["replay"]["cursor"]) == (3, 3)

    assert a["gap"]["status"] == 409
    assert a["gap"]["content_type"] == "application/problem+json"
    assert a["gap"]["type"] == PROBLEMS + "seq-gap"
    assert a["gap"]["sent_first_seq"] == 5
    assert a["gap"]["expected"] == 4
    assert a["tamper"]["status"] == 422
    assert a["tamper"]["type"] == PROBLEMS + "checksum-mismatch"
    assert a["tamper"]["expected"] == a["tamper"]["local_md5_of_tampered"]

    # The refused pushes changed nothing: the real ones continue at seq 4 and feed seq 4.
    assert [p["seqs"] for p in rest] == [[4, 5, 6], [7]]
    assert all(s == "applied" for p in rest for s in p["statuses"])
    assert (rest[-1]["high_water"], rest[-1]["cursor"]) == (7, 7)
    assert a["prediction_mismatches"] == []
    assert a["prediction_equals_server_record"] is True

    pull = a["pull"]
    assert pull["changes"] == 7
    assert pull["pages"] == 3  # limit 3: 3 + 3 + 1
    assert pull["checksums_verified"] == pull["pages"]
    assert pull["checksum_failures"] == 0
    assert (a["cursor"], a["outbox"], a["next_seq"]) == (7, 0, 8)
    order = a["view"]["orders/o-17"]["fields"]
    assert order["status"] == "sent"
    assert order["total"] == 2 * 450 + 300
    assert {k: order[k] for k in ("note", "covers", "tags")} == {
        "note": "window seat",
        "covers": 2,
        "tags": ["vip"],
    }
    assert all(line["sent"] for line in order["lines"].values())

    # A second device pulls with the same client, in pages of 2, and sees the same view.
    js(
        "enroll",
        "--state",
        b_state,
        "--base-url",
        server.base_url,
        "--code",
        server.enrollment_code("till-b"),
    )
    b = js("sync", "--state", b_state, "--page-size", "2")
    assert b["pull"]["pages"] == 4
    assert b["pull"]["checksums_verified"] == 4
    assert b["view"] == a["view"]
    assert (b["view_md5"], b["cursor"]) == (a["view_md5"], a["cursor"])

    # Concurrent patches: till-b writes and syncs; till-a (clock 60 s ahead) writes
    # without having pulled that write. The server merges (smart_merge: lww for `note`,
    # union for `tags`); both terminals converge on the merge.
    patched = js(
        "patch",
        *("--state", b_state, "--collection", "orders", "--record", "o-17"),
        *("--fields", '{"note": "from B", "tags": ["window"]}'),
    )
    assert patched["predicted"] == "applied"
    b = js("sync", "--state", b_state)
    assert b["pushes"][0]["statuses"] == ["applied"]
    patched = js(
        "patch",
        *("--state", a_state, "--collection", "orders", "--record", "o-17"),
        *("--fields", '{"note": "from A", "tags": ["birthday"]}', "--wall-skew-ms", "60000"),
    )
    assert patched["predicted"] == "applied"  # till-a has not seen till-b's write
    a = js("sync", "--state", a_state, "--wall-skew-ms", "60000")
    assert a["pushes"][0]["statuses"] == ["merged"]
    assert a["pushes"][0]["cursor"] == 9
    b = js("sync", "--state", b_state)
    assert b["view"] == a["view"]
    assert b["view_md5"] == a["view_md5"]
    assert (a["outbox"], b["outbox"], a["cursor"], b["cursor"]) == (0, 0, 9, 9)
    merged = a["view"]["orders/o-17"]
    assert merged["fields"]["note"] == "from A"
    assert merged["stamps"]["note"][1:] == ["till-a", 9]
    assert merged["fields"]["tags"] == ["window", "birthday"]
