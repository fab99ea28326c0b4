"""The routes: lists, events, profiles, health, metrics, the OpenAPI document, the page.

Starlette on uvicorn (see the README for why). Bodies are encoded with orjson; every
refusal is JSON ``{"error": ..., "detail": ...}`` and counted by reason in
``stream_rec_http_bad_requests_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from stream_rec.api.asgi import Instrumented, is_loopback, json_response
from stream_rec.api.feed import CHECK_SECONDS
from stream_rec.api.ingest import DeliveryFailed, Kind, produce, validate_body
from stream_rec.api.ingest import authorized as is_authorized
from stream_rec.api.openapi import openapi_document
from stream_rec.api.runtime import ApiRuntime
from stream_rec.config import Settings
from stream_rec.store import StoreUnavailable

_JSON = "application/json"
_HEARTBEAT_SECONDS = 15.0
_PRODUCE_TIMEOUT_SECONDS = 10.0
_PAGE_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/page/style.css": ("style.css", "text/css; charset=utf-8"),
}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


class Handlers:
    """The endpoints, bound to one :class:`ApiRuntime`."""

    def __init__(self, runtime: ApiRuntime) -> None:
        self.rt = runtime
        self.metrics = runtime.metrics
        package = resources.files("stream_rec.api") / "page"
        self._page = {
            path: ((package / name).read_bytes(), media)
            for path, (name, media) in _PAGE_FILES.items()
        }
        self._openapi = orjson.dumps(openapi_document())

    def refuse(self, status: int, error: str, detail: str, **extra: Any) -> Response:
        """A 4xx answer, counted by ``error`` (a label of the bad-requests metric)."""
        self.metrics.bad[error].inc()
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return json_response({"error": error, "detail": detail, **extra}, status, headers)

    async def recommendation(self, request: Request) -> Response:
        user_id: str = request.path_params["user_id"]
        k = _first_k(request.query_params.multi_items())
        if isinstance(k, str):
            return self.refuse(400, "bad_parameter", k)
        try:
            entry = await self.rt.lists.get(user_id)
        except StoreUnavailable:
            return json_response(
                {"error": "redis_unavailable", "detail": "Redis is unreachable"}, 503
            )
        if entry is None:
            return self.refuse(
                404,
                "unknown_user",
                f"no list for user {user_id!r} (unknown, or no event yet)"[:300],
            )
        if k is None:
            return Response(entry.body, media_type=_JSON)
        message = orjson.loads(entry.body)
        message["items"] = message["items"][:k]
        return json_response(message)

    async def events(self, request: Request) -> Response:
        return await self._ingest(request, "events", self.rt.settings.topics.events)

    async def profiles(self, request: Request) -> Response:
        return await self._ingest(request, "profiles", self.rt.settings.topics.profiles)

    async def _ingest(self, request: Request, kind: Kind, topic: str) -> Response:
        if not is_authorized(request.headers.get("authorization"), self.rt.token):
            return self.refuse(401, "unauthorized", "this server needs its bearer token")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != _JSON:
            return self.refuse(415, "bad_media_type", "send the body as application/json")
        limit = self.rt.settings.http.max_body_bytes
        body = await _read_limited(request, limit)
        if body is None:
            return self.refuse(413, "too_large", f"the body is over {limit} bytes")
        checked = validate_body(body, kind, self.rt.settings.worker.max_event_bytes)
        if not isinstance(checked, list):
            refusal = checked.as_json(kind)
            return self.refuse(422, refusal.pop("error"), refusal.pop("detail"), **refusal)
        try:
            await asyncio.to_thread(
                produce, self.rt.producer, topic, checked, _PRODUCE_TIMEOUT_SECONDS
            )
        except DeliveryFailed as exc:
            self.metrics.produce_errors.inc()
            return json_response({"error": "broker_unavailable", "detail": str(exc)[:300]}, 503)
        self.metrics.produced[kind].inc(len(checked))
        return json_response({"accepted": len(checked)}, 202)

    async def users(self, request: Request) -> Response:
        value = request.query_params.get("limit", "20")
        if not value.isdigit() or not 1 <= int(value) <= 1000:
            return self.refuse(400, "bad_parameter", "limit must be an integer from 1 to 1000")
        return json_response({"users": self.rt.cache.recent_users(int(value))})

    async def health(self, _request: Request) -> Response:
        rt, now = self.rt, time.time()
        checked = rt.feed.broker_checked_at
        broker_ok = checked is not None and now - checked < 3 * CHECK_SECONDS + 1
        try:
            await asyncio.wait_for(asyncio.to_thread(rt.store.ping), timeout=2.0)
            redis_ok = True
        except (StoreUnavailable, TimeoutError):
            redis_ok = False
        payload = {
            "status": "ok" if broker_ok and redis_ok else "unavailable",
            "broker": {
                "reachable": broker_ok,
                "checked_seconds_ago": None if checked is None else round(now - checked, 3),
            },
            "redis": {"reachable": redis_ok},
            "lists": {"cached": len(rt.cache), "ready": rt.feed.ready, "lag": rt.feed.lag},
            "newest_event_age_seconds": _rounded(rt.panel.newest_event_age(now)),
            "worker_snapshot_age_seconds": _rounded(rt.panel.snapshot_age(now)),
        }
        return json_response(payload, 200 if payload["status"] == "ok" else 503)

    async def prometheus(self, _request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(self, _request: Request) -> Response:
        return Response(self._openapi, media_type=_JSON)

    async def page(self, request: Request) -> Response:
        body, media = self._page[request.url.path]
        return Response(body, media_type=media, headers=_PAGE_HEADERS)

    async def list_stream(self, request: Request) -> Response:
        user_id: str = request.path_params["user_id"]
        return _sse(self._list_events(user_id))

    async def metrics_stream(self, _request: Request) -> Response:
        return _sse(self._point_events())

    async def _list_events(self, user_id: str) -> AsyncIterator[bytes]:
        rt = self.rt
        subscription = rt.hub.subscribe_user(user_id)  # before reading: no list is missed
        self.metrics.stream_clients.inc()
        try:
            yield b"retry: 1000\n\n"
            version = 0
            with contextlib.suppress(StoreUnavailable):
                entry = await rt.lists.get(user_id)
                if entry is not None:
                    version = entry.version
                    yield _event("list", entry.body)
            while not subscription.closed:
                if not await _wait(subscription.changed):
                    yield b": keep-alive\n\n"
                    continue
                entry = subscription.take_list()
                if entry is not None and entry.version > version:
                    version = entry.version
                    yield _event("list", entry.body)
        finally:
            rt.hub.unsubscribe(subscription)
            self.metrics.stream_clients.dec()

    async def _point_events(self) -> AsyncIterator[bytes]:
        rt = self.rt
        subscription = rt.hub.subscribe_metrics()
        self.metrics.stream_clients.inc()
        try:
            yield b"retry: 1000\n\n"
            yield _event("points", orjson.dumps(rt.panel.points()))
            while not subscription.closed:
                if not await _wait(subscription.changed):
                    yield b": keep-alive\n\n"
                    continue
                points = subscription.take_points()
                if points:
                    yield _event("points", orjson.dumps(points))
        finally:
            rt.hub.unsubscribe(subscription)
            self.metrics.stream_clients.dec()

    async def not_found(self, _request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code == 405:
            return self.refuse(405, "method_not_allowed", "this method is not allowed here")
        return self.refuse(404, "not_found", "no such resource (see /openapi.json)")


def _first_k(query: list[tuple[str, str]]) -> int | str | None:
    """The ``k`` of a list request (None: the whole list), or why the query is refused.

    >>> _first_k([("k", "3")]), _first_k([])
    (3, None)
    >>> _first_k([("context.device", "tv")]).startswith("context.device: the list is scored")
    True
    """
    k: int | None = None
    for name, value in query:
        if name == "k" and value.isdigit() and int(value) >= 1:
            k = int(value)
        elif name == "k":
            return f"k must be a positive integer, not {value!r}"[:200]
        elif name.startswith("context."):
            return (
                f"{name}: the list is scored for the newest event's context; score another "
                "with `stream-rec recommend USER --context NAME=VALUE`"
            )[:200]
        else:
            return f"unknown parameter {name!r}"[:200]
    return k


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to be over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _wait(event: asyncio.Event) -> bool:
    """Wait for ``event`` up to the heartbeat interval; False on timeout."""
    try:
        await asyncio.wait_for(event.wait(), _HEARTBEAT_SECONDS)
    except TimeoutError:
        return False
    return True


def _event(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _sse(events: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def create_app(settings: Settings, runtime: ApiRuntime | None = None) -> ASGIApp:
    """The ASGI application; its lifespan starts and stops the runtime's clients."""
    rt = runtime if runtime is not None else ApiRuntime(settings)
    h = Handlers(rt)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    routes = [
        Route("/v1/recommendations/{user_id:path}", h.recommendation, methods=["GET"]),
        Route("/v1/events", h.events, methods=["POST"]),
        Route("/v1/profiles", h.profiles, methods=["POST"]),
        Route("/v1/users", h.users, methods=["GET"]),
        Route("/v1/health", h.health, methods=["GET"]),
        Route("/v1/streams/recommendations/{user_id:path}", h.list_stream, methods=["GET"]),
        Route("/v1/streams/metrics", h.metrics_stream, methods=["GET"]),
        Route("/metrics", h.prometheus, methods=["GET"]),
        Route("/openapi.json", h.openapi, methods=["GET"]),
        *(Route(path, h.page, methods=["GET"]) for path in _PAGE_FILES),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: h.not_found, 405: h.not_found},
    )
    return Instrumented(app, rt, loopback_only=is_loopback(settings.http.host))
