"""Chaos tests start worker processes; none outlives its test, whatever the outcome."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.support import WorkerProcess


@pytest.fixture(autouse=True)
def _kill_leftover_workers() -> Iterator[None]:
    yield
    WorkerProcess.kill_all()
