"""Retry with exponential backoff, for calls to a store or broker that may be down."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Stopped(Exception):
    """Retrying ended because the worker was asked to stop."""


def with_backoff(
    call: Callable[[], T],
    retriable: tuple[type[BaseException], ...],
    *,
    what: str,
    initial: float,
    maximum: float,
    stop: threading.Event,
    on_failure: Callable[[BaseException], None] | None = None,
) -> T:
    """Call until it succeeds, pausing ``initial``, then twice as long, up to ``maximum``.

    Only ``retriable`` exceptions are retried; others propagate. Raises :class:`Stopped`
    if ``stop`` is set while waiting.
    """
    delay = initial
    attempt = 0
    while True:
        try:
            return call()
        except retriable as exc:
            attempt += 1
            if on_failure is not None:
                on_failure(exc)
            log.warning("%s failed (attempt %d): %s; retrying in %.2fs", what, attempt, exc, delay)
            if stop.wait(delay):
                raise Stopped(what) from exc
            delay = min(delay * 2, maximum)
