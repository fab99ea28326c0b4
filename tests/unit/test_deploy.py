"""The shipped stack: docker-compose.yml parses and runs what the tests run.

There is no Docker engine here, so the file is checked by parsing: every long-running
service has a healthcheck, one-shot ones say so, and the worker image's command is the
same ``consumers/`` entry point the integration tests start.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_every_service_has_a_healthcheck_or_is_one_shot() -> None:
    services = _compose()["services"]
    assert {"kafka", "kafka-init", "redis", "trainer", "prometheus"} <= set(services)
    for name, service in services.items():
        one_shot = service.get("restart") == "no"
        assert one_shot or "healthcheck" in service, f"{name} has no healthcheck"
        assert "image" in service or "build" in service, name


def test_the_worker_runs_the_tested_entry_point() -> None:
    trainer = _compose()["services"]["trainer"]
    assert trainer["command"] == ["python", "consumers/trainer.py"]
    assert (ROOT / "consumers" / "trainer.py").exists()
    dockerfile = (ROOT / trainer["build"]["dockerfile"]).read_text()
    assert 'CMD ["python", "consumers/trainer.py"]' in dockerfile
    assert re.search(r"^USER \S+", dockerfile, re.MULTILINE), "the image must not run as root"
    env = trainer["environment"]
    assert {"STREAM_REC_KAFKA__BOOTSTRAP_SERVERS", "STREAM_REC_REDIS__URL"} <= set(env)


def test_redis_is_durable_and_never_evicts() -> None:
    command = " ".join(_compose()["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert "--requirepass" in command


def test_topics_match_the_defaults_and_recommendations_are_compacted() -> None:
    script = " ".join(_compose()["services"]["kafka-init"]["command"])
    for topic in (
        "stream-rec.events",
        "stream-rec.profiles",
        "stream-rec.recommendations",
        "stream-rec.metrics",
        "stream-rec.dead-letter",
    ):
        assert f"--topic {topic} " in script
    assert re.search(r"stream-rec\.recommendations [^\n]*cleanup\.policy=compact", script)
