"""A small HTTP load generator and page-latency probe for `stream-rec bench` (section http).

``python -m stream_rec.api.loadgen URL --rate R --seconds S`` runs in a process of its
own, so that the client's CPU is not the server's. Open loop: request i is *due* at
start + i/R whatever the server does, and its latency counts from that moment, so a
stalled server shows up as latency instead of lowering the offered load (no coordinated
omission). Requests go over ``--connections`` keep-alive HTTP/1.1 connections; a request
due while every connection is busy waits, and that wait is part of its latency.
``--closed`` instead sends as fast as each connection can (saturation requests/s).

:func:`click_to_page` measures what the live page sees: from POSTing a click to the
arrival, on the user's server-sent-event stream, of a newer list without the item.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import orjson
import uvloop


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.lower().split(b"\r\n"):
        if line.startswith(b"content-length:"):
            length = int(line[15:])
    return status, await reader.readexactly(length)


def _request(path: str, host: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


async def open_loop(
    url: str, paths: Sequence[str], rate: float, seconds: float, connections: int
) -> dict[str, Any]:
    """Offer ``rate`` GETs a second for ``seconds``, cycling through ``paths``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [_request(p, parts.netloc) for p in paths]
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        while (item := await queue.get()) is not None:
            due, request = item
            writer.write(request)
            status, _ = await _read_response(reader)
            latencies.append(time.perf_counter() - due)
            errors += status != 200
        writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(0.2)  # connected
    total = int(rate * seconds)
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due_now = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent < due_now:
            queue.put_nowait((start + sent / rate, requests[sent % len(requests)]))
            sent += 1
        await asyncio.sleep(0.0005)
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {
        "offered_per_s": rate,
        "requests": total,
        "achieved_per_s": round(total / elapsed),
        "p50_ms": round(1000 * percentile(latencies, 0.5), 3),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 3),
        "max_ms": round(1000 * max(latencies), 3),
        "errors": errors,
        "connections": connections,
        "seconds": seconds,
    }


async def closed_loop(
    url: str, paths: Sequence[str], seconds: float, connections: int
) -> dict[str, Any]:
    """Each connection sends its next GET as soon as the previous answer is in."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [_request(p, parts.netloc) for p in paths]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        n = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(requests[n % len(requests)])
            await _read_response(reader)
            latencies.append(time.perf_counter() - started)
            n += connections
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection(c) for c in range(connections)))
    elapsed = time.perf_counter() - started
    return {
        "requests_per_s": round(len(latencies) / elapsed),
        "p50_ms": round(1000 * percentile(latencies, 0.5), 3),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 3),
        "connections": connections,
        "seconds": seconds,
    }


async def _sse_events(reader: asyncio.StreamReader) -> AsyncIterator[tuple[str, bytes]]:
    """(event, data) pairs of a chunked text/event-stream response (headers already read)."""
    buffer = b""
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            return
        buffer += await reader.readexactly(size)
        await reader.readexactly(2)
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            event, data = "message", b""
            for line in block.split(b"\n"):
                if line.startswith(b"event: "):
                    event = line[7:].decode()
                elif line.startswith(b"data: "):
                    data = line[6:]
            if data:
                yield event, data


async def click_to_page(url: str, users: Sequence[str], clicks: int) -> list[float]:
    """Seconds from each POSTed click to the newer list without its item on the stream."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: list[float] = []
    for n in range(clicks):
        user = users[n % len(users)]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(_request(f"/v1/streams/recommendations/{user}", parts.netloc))
        await reader.readuntil(b"\r\n\r\n")
        events = _sse_events(reader)
        current: Any = None
        async for event, data in events:
            if event == "list":
                current = orjson.loads(data)
                break
        item = current["items"][0]["item_id"]
        click = {
            "event_id": f"bench-{uuid.uuid4().hex}",
            "type": "click",
            "user_id": user,
            "item_id": item,
            "ts": time.time(),
        }
        body = orjson.dumps(click)
        started = time.perf_counter()
        post_reader, post_writer = await asyncio.open_connection(host, port)
        post_writer.write(
            f"POST /v1/events HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status, answer = await _read_response(post_reader)
        post_writer.close()
        if status != 202:
            raise RuntimeError(f"the click was refused ({status}): {answer!r}")
        async for event, data in events:
            message = orjson.loads(data) if event == "list" else None
            if (
                message is not None
                and message["version"] > current["version"]
                and item not in {e["item_id"] for e in message["items"]}
            ):
                latencies.append(time.perf_counter() - started)
                break
        writer.close()
    return latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream_rec.api.loadgen")
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--users", type=int, required=True, help="GET the lists of u0..uN-1")
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--closed", action="store_true", help="saturation instead of a rate")
    parser.add_argument("--query", default="", help="a query string for every GET (k=10)")
    args = parser.parse_args(argv)
    query = f"?{args.query}" if args.query else ""
    paths = [f"/v1/recommendations/u{n}{query}" for n in range(args.users)]
    if args.closed:
        result = uvloop.run(closed_loop(args.url, paths, args.seconds, args.connections))
    else:
        result = uvloop.run(open_loop(args.url, paths, args.rate, args.seconds, args.connections))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
