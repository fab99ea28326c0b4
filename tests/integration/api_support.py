"""Helpers for tests of the HTTP API against a real server, worker, Kafka and Redis."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from stream_rec.api.server import ApiServer
from stream_rec.config import HttpSettings, Settings
from tests.integration.support import running_worker


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


def call(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Answer:
    """One HTTP request on a new connection; the JSON answer decoded (else the text)."""
    data = raw if raw is not None else (None if body is None else orjson.dumps(body))
    sent = {"Content-Type": "application/json"} if data is not None else {}
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.netloc, timeout=30)
    try:
        conn.request(method, target, body=data, headers=sent | (headers or {}))
        response = conn.getresponse()
        status, payload = response.status, response.read()
        got = {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
    try:
        decoded: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        decoded = payload.decode()
    return Answer(status, decoded, got)


def with_http(settings: Settings, **http: Any) -> Settings:
    """``settings`` with an API on a free port and a metrics snapshot every second."""
    return settings.model_copy(
        update={
            "http": HttpSettings(port=0, **http),
            "metrics": settings.metrics.model_copy(update={"snapshot_seconds": 1.0}),
        }
    )


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """A worker (in a thread) and the API server; yields the server's base URL."""
    with running_worker(settings), ApiServer(settings) as server:
        yield server.url


class EventStream:
    """A server-sent-event client, as the page's EventSource: (event, data) pairs."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.netloc, timeout=30)
        self._conn.request("GET", parts.path, headers={"Accept": "text/event-stream"})
        self._response = self._conn.getresponse()
        assert self._response.status == 200, self._response.status
        assert self._response.headers["content-type"].startswith("text/event-stream")

    def next(self, name: str, timeout: float) -> Any:
        """The data (JSON-decoded) of the next event called ``name``."""
        deadline = time.monotonic() + timeout
        event, data = None, b""
        while time.monotonic() < deadline:
            line = self._response.readline().rstrip(b"\r\n")
            if line.startswith(b"event: "):
                event = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
            elif not line and event is not None:
                if event == name:
                    return orjson.loads(data)
                event, data = None, b""
        raise AssertionError(f"no {name!r} event within {timeout} s")

    def close(self) -> None:
        self._conn.close()
