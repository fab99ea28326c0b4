"""`stream-rec demo` as a newcomer runs it: it starts everything, prints lists, stops clean."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.integration.support import process_alive

pytestmark = pytest.mark.integration


def test_demo_runs_for_20_seconds_prints_lists_and_stops_everything() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_REC_")}
    env |= {
        k: v
        for k, v in os.environ.items()
        if k in ("STREAM_REC_CACHE_DIR", "STREAM_REC_KAFKA_LIBS")
    }
    result = subprocess.run(
        [sys.executable, "-m", "stream_rec", "demo", "--seconds", "20"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "metrics at http://127.0.0.1:" in out
    assert len(re.findall(r"u\d+ likes \S+: top-10 (\S+ ){9}\S+", out)) >= 3, out
    assert "worker exited with code 0" in out
    last = re.findall(r"produced (\d+), applied (\d+)", out)[-1]
    assert last[0] == last[1], f"the demo ended with events unapplied: {last}"
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out) + re.findall(r"worker pid (\d+)", out)]
    assert len(pids) == 3
    assert not [p for p in pids if process_alive(p)], "the demo left a process running"
