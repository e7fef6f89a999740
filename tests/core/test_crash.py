"""A terminal killed with SIGKILL mid-write loses nothing it acknowledged."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fynlo_sync.domains.orders import order_total
from fynlo_sync.store import SqliteTerminalStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kill_after", [1, 150, 600])
def test_sigkill_keeps_every_acknowledged_write(tmp_path: Path, kill_after: int) -> None:
    db = tmp_path / "till.db"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.core.crash_child", str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged: dict[int, str] = {}
    try:
        for line in child.stdout:
            seq, op_id = line.split()
            acknowledged[int(seq)] = op_id
            if len(acknowledged) >= kill_after:
                os.kill(child.pid, signal.SIGKILL)  # mid-stream: it is still writing
                break
    finally:
        child.kill()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) == kill_after

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = SqliteTerminalStore(db, "till-1")
    outbox = store.outbox()
    seqs = [op.seq for op in outbox]
    # every acknowledged op is there with its id; the outbox is gapless from 1
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= max(acknowledged)
    by_seq = {op.seq: op.op_id for op in outbox}
    assert all(by_seq[s] == op_id for s, op_id in acknowledged.items())
    assert store.meta().next_seq == len(seqs) + 1
    # the local view holds whole orders: state and outbox were written together
    orders = store.records("orders")
    lines = sum(len(o.fields["lines"]) for o in orders)
    assert len(orders) + lines == len(seqs)
    for order in orders:
        assert order.fields["total"] == order_total(order.fields)
    store.close()
