"""The arrows point one way: the model imports no I/O; nothing connects at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

IO_MODULES = ("kafka", "redis", "prometheus_client", "pydantic", "pydantic_settings", "orjson")


def test_importing_the_model_loads_no_io_library() -> None:
    code = (
        "import sys, stream_rec.model, stream_rec.model.kernels;"
        f"print(sorted(m for m in {IO_MODULES!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_importing_everything_opens_no_socket() -> None:
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise AssertionError('connected at import time')\n"
        "socket.socket.connect = refuse\n"
        "import stream_rec.cli, stream_rec.stream.worker, stream_rec.demo, stream_rec.services\n"
        "import stream_rec.api.app, stream_rec.api.server\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "ok", out.stderr


def test_import_contracts_hold() -> None:
    """import-linter's contracts in pyproject.toml (model pure; store knows no Kafka)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout
