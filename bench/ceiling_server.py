"""The ceiling of bench/run.py: a bare ``websockets`` broadcast server with rooms.

No Lambda semantics, no store, no events: a client joins the rooms named by ``?room=`` (comma
separated) when it connects, and a text frame ``{"room": ..., "text": ...}`` is broadcast as it
came, byte for byte, to every member of that room (the sender included) with
``websockets.broadcast``. The fastest a chat fan-out gets in Python with the same WebSocket
library the gateway uses: what the gateway is measured against.

    python bench/ceiling_server.py --port 0      # prints "listening on PORT" once bound
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


rooms: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    query = parse_qs(urlsplit(ws.request.path if ws.request else "/").query)
    joined = [r for value in query.get("room", []) for r in value.split(",") if r] or ["lobby"]
    for room in joined:
        rooms.setdefault(room, set()).add(ws)
    try:
        async for message in ws:
            if not isinstance(message, str):
                continue
            try:
                room = json.loads(message)["room"]
            except (ValueError, KeyError, TypeError):
                continue
            members = rooms.get(room)
            if members and ws in members:
                broadcast(members, message)
    finally:
        for room in joined:
            members = rooms.get(room)
            if members is not None:
                members.discard(ws)
                if not members:
                    del rooms[room]


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Messages of any size the gateway accepts; no compression (the load generator offers none).
    async with serve(
        handler, host, port, compression=None, max_size=128 * 1024, backlog=4096
    ) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"listening on {bound}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    raise_nofile_limit()
    asyncio.run(main(args.host, args.port))
