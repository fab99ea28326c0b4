"""Running the API on uvicorn: in the foreground (`stream-rec serve`) or in a thread.

The listening socket is bound here, before uvicorn starts, so that port 0 (any free port)
gives an address the caller can print. uvicorn uses httptools and uvloop when they are
installed (they are dependencies); access logs are off (a log line per request would cost
more than the request).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from stream_rec.api.app import create_app
from stream_rec.api.runtime import ApiRuntime
from stream_rec.config import Settings

log = logging.getLogger(__name__)

_GRACEFUL_SECONDS = 2.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _server(settings: Settings, runtime: ApiRuntime | None = None) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, runtime),
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=int(_GRACEFUL_SECONDS),
        timeout_keep_alive=30,
        server_header=False,
    )
    return uvicorn.Server(config)


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn handles them), then stop gracefully."""
    http = settings.http
    if http.token is None and http.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(
            "serving on %s without STREAM_REC_HTTP__TOKEN: anyone who reaches it may POST events",
            http.host,
        )
    sock = bind(http.host, http.port)
    log.info("serving the API and the live page at %s", address(sock))
    print(f"stream-rec serve: the live page is at {address(sock)}", flush=True)
    _server(settings).run(sockets=[sock])


class ApiServer:
    """The API in a background thread, for tests and benchmarks: ``start()`` returns once
    it serves (its clients connected; until the lists cache has read the topic, lists come
    from Redis); ``stop()`` ends it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = ApiRuntime(settings)
        self._sock = bind(settings.http.host, settings.http.port)
        self.url = address(self._sock).rstrip("/")
        self._server = _server(settings, self.runtime)
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> ApiServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the API server stopped while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API server did not start within {timeout} s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        self._sock.close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
