"""The ASGI layer in front of Starlette: metrics by route, the Host check, the hot GET.

See :class:`Instrumented`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from stream_rec.api.runtime import ApiRuntime

_JSON = "application/json"


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(payload), status, headers=headers, media_type=_JSON)


_ROUTE_PREFIXES = (
    ("/v1/recommendations/", "recommendations"),
    ("/v1/streams/", "stream"),
    ("/v1/events", "events"),
    ("/v1/profiles", "profiles"),
    ("/v1/users", "users"),
    ("/v1/health", "health"),
    ("/metrics", "metrics"),
    ("/openapi.json", "openapi"),
    ("/page/", "page"),
)
_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback bind address."""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def route_of(path: str) -> str:
    """The bounded route label of a path.

    >>> route_of("/v1/recommendations/u1"), route_of("/"), route_of("/nope")
    ('recommendations', 'page', 'other')
    """
    if path == "/":
        return "page"
    for prefix, route in _ROUTE_PREFIXES:
        if path.startswith(prefix):
            return route
    return "other"


class Instrumented:
    """Counts and times every HTTP request by route (streams are counted, not timed), and,
    on a loopback address, refuses Host headers that do not name this machine (a web page
    elsewhere must not reach the API through DNS rebinding).

    It also answers the hot request itself: a plain ``GET /v1/recommendations/{user_id}``
    (no query) whose list the cache holds is sent as the stored bytes without Starlette's
    routing, request and response objects (`stream-rec bench` compares the two:
    ``saturation`` and ``saturation_through_starlette``). Every other request, and any
    miss, goes through Starlette as usual.
    """

    def __init__(self, app: Starlette, runtime: ApiRuntime, loopback_only: bool) -> None:
        self.app = app
        self._metrics = runtime.metrics
        self._lists = runtime.lists
        self._loopback_only = loopback_only
        self._hit = runtime.metrics.reads["cache"]
        self._served = runtime.metrics.requests["recommendations"]
        self._timed = runtime.metrics.duration["recommendations"]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path: str = scope["path"]
        if self._loopback_only and not _local_host(scope):
            self._metrics.bad["bad_host"].inc()
            response = json_response({"error": "bad_host", "detail": "use 127.0.0.1"}, 421)
            await response(scope, receive, send)
        elif (
            path.startswith(_LISTS)
            and scope["method"] == "GET"
            and not scope["query_string"]
            and (entry := self._lists.cached(path[len(_LISTS) :])) is not None
        ):
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(entry.body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": entry.body})
            self._hit.inc()
            self._served.inc()
            self._timed.observe(time.perf_counter() - started)
            return
        else:
            await self.app(scope, receive, send)
        route = route_of(path)
        self._metrics.requests[route].inc()
        if route != "stream":
            self._metrics.duration[route].observe(time.perf_counter() - started)


_LISTS = "/v1/recommendations/"


def _local_host(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
            host = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            return host in _LOOPBACK_NAMES
    return True  # HTTP/1.0 without Host: not a browser
