"""Crash points for the crash tests: kill this process at a chosen point of a batch.

``STREAM_REC_CRASH_AT="after-commit:3"`` makes the 3rd pass through the point
``after-commit`` end the process at once (``os._exit``: no cleanup, as kill -9 would).
Points: ``after-flush`` (lists and dead letters sent, state not yet written),
``after-exec`` (the commit's transaction is in Redis, its user shards' step not yet run),
``after-commit`` (state written to Redis, offsets not yet committed to Kafka). Unset, a
point costs one comparison.
"""

from __future__ import annotations

import os

ENV = "STREAM_REC_CRASH_AT"
_EXIT_CODE = 137  # what a SIGKILL'ed process reports


class _CrashPoint:
    def __init__(self, spec: str) -> None:
        point, _, count = spec.partition(":")
        self.point = point
        self.remaining = int(count) if count.isdigit() else 0

    def passed(self, name: str) -> None:
        if not self.point or name != self.point:
            return
        self.remaining -= 1
        if self.remaining <= 0:
            os._exit(_EXIT_CODE)


_configured = _CrashPoint(os.environ.get(ENV, ""))


def crash_point(name: str) -> None:
    """Pass the crash point ``name``; ends the process on its configured pass."""
    _configured.passed(name)
