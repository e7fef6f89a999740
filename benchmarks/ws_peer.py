"""Child processes of benchmark (6).

``python -m benchmarks.ws_peer clients URL COUNT``: open COUNT WebSockets to URL (the
server's ``/v1/sync/ws?token=...``, or the bare broadcast server), print ``READY <connect
seconds>``; then for every poke record when each socket got it, and print ``GOT <cursor>``
once all COUNT sockets have it; on ``DONE`` from stdin print one JSON line of receipt times
(``time.monotonic_ns``, one clock for every process on the machine) and exit.

``python -m benchmarks.ws_peer broadcast PORT``: the baseline server, a bare ``websockets``
server that relays each message of a ``/control`` connection to every other socket, as
a poke. It stands for the least work a fan-out of N sockets costs on this machine.

Every wait is bounded (connect 120 s, or COUNT / 10 s when longer; a run 900 s).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import defaultdict
from typing import Any

__all__ = ["main"]


async def _clients(url: str, count: int) -> None:
    from websockets.asyncio.client import connect

    got: dict[int, list[int]] = defaultdict(list)
    sockets: list[Any] = []
    gate = asyncio.Semaphore(64)

    async def open_one() -> Any:
        async with gate:
            return await connect(url, open_timeout=60, ping_interval=None, max_queue=None)

    start = time.perf_counter()
    # 120 s, or longer for thousands of handshakes on a busy machine (10 a second at worst)
    budget = max(120.0, count / 10)
    opening = asyncio.gather(*(open_one() for _ in range(count)))
    sockets = list(await asyncio.wait_for(opening, budget))
    connect_s = time.perf_counter() - start
    first: list[int] = []
    for ws in sockets:  # the poke each socket gets on connect: the cursor now
        message = json.loads(await asyncio.wait_for(ws.recv(), 30))
        first.append(int(message["cursor"]))
    print(f"READY {connect_s:.6f} {max(first)}", flush=True)

    async def listen(ws: Any) -> None:
        async for raw in ws:
            now = time.monotonic_ns()
            cursor = int(json.loads(raw)["cursor"])
            got[cursor].append(now)
            if len(got[cursor]) == count:
                print(f"GOT {cursor}", flush=True)

    tasks = [asyncio.create_task(listen(ws)) for ws in sockets]
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), 900)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    if line.strip() == "DONE":
        print(json.dumps({"connect_s": connect_s, "got": got}), flush=True)


async def _broadcast(port: int) -> None:
    from websockets.asyncio.server import broadcast, serve

    clients: set[Any] = set()

    async def handler(ws: Any) -> None:
        if ws.request.path.startswith("/control"):
            async for message in ws:
                broadcast(clients, json.dumps({"type": "poke", "cursor": int(message)}))
                await ws.send("ok")
            return
        clients.add(ws)
        try:
            await ws.send(json.dumps({"type": "poke", "cursor": 0}))
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    # No per-message-deflate, as our server (server.serving.uvicorn_options): compressing
    # each ~30-byte poke per socket is work a bare broadcast need not do.
    async with serve(
        handler, "127.0.0.1", port, ping_interval=None, max_queue=None, compression=None
    ):
        print("LISTENING", flush=True)
        await asyncio.sleep(900)


def main(argv: list[str]) -> int:
    if argv[:1] == ["clients"]:
        asyncio.run(_clients(argv[1], int(argv[2])))
        return 0
    if argv[:1] == ["broadcast"]:
        asyncio.run(_broadcast(int(argv[1])))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
