"""The shipped stack: docker-compose.yml parses and runs what the tests run.

There is no Docker engine here, so the file is checked by parsing: every long-running
service has a healthcheck, one-shot ones say so, and the worker image's command is the
same ``consumers/`` entry point the integration tests start.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
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


def test_the_api_runs_the_tested_entry_point_on_a_local_port_with_a_token() -> None:
    api = _compose()["services"]["api"]
    assert api["command"] == ["python", "consumers/api.py"]
    assert 'main(["serve"])' in (ROOT / "consumers" / "api.py").read_text()
    env = api["environment"]
    # All interfaces inside the container network; published on 127.0.0.1 only (below).
    assert env["STREAM_REC_HTTP__HOST"] == "0.0.0.0"  # noqa: S104 - the container network
    assert env["STREAM_REC_HTTP__TOKEN"].startswith("${API_TOKEN")
    assert api["ports"] == ["127.0.0.1:8080:8080"]
    scrape = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text())["scrape_configs"]
    assert any(job["job_name"] == "stream-rec-api" for job in scrape)


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


def test_compose_validates_against_the_schema_of_the_stack() -> None:
    import jsonschema

    schema = json.loads((ROOT / "ops" / "compose-schema.json").read_text())
    jsonschema.validate(_compose(), schema)  # published ports stay on 127.0.0.1, etc.


def test_grafana_and_prometheus_get_their_files() -> None:
    services = _compose()["services"]
    prometheus = " ".join(services["prometheus"]["volumes"])
    assert "./ops/prometheus.yml:" in prometheus and "./ops/alerts.yml:" in prometheus
    grafana = " ".join(services["grafana"]["volumes"])
    assert "./ops/grafana/provisioning:" in grafana and "./ops/grafana/dashboards:" in grafana
    dashboard = json.loads(
        (ROOT / "ops" / "grafana" / "dashboards" / "stream-rec.json").read_text()
    )
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in ("applied", "lag", "freshness", "dead letters", "hit rate", "coverage", "redis"):
        assert needed in titles, needed


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: .ci/run installs Debian's prometheus package"
    return subprocess.run(
        [promtool, *args], cwd=ROOT / "ops", capture_output=True, text=True, check=False
    )


def test_promtool_checks_the_config_and_the_rules() -> None:
    config = _promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr
    rules = _promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    result = _promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = set(re.findall(r"alert: (\w+)", (ROOT / "ops" / "alerts.yml").read_text()))
    tested = set(re.findall(r"alertname: (\w+)", (ROOT / "ops" / "alerts.test.yml").read_text()))
    assert alerts <= tested, f"untested alerts: {alerts - tested}"
