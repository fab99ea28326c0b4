"""Settings: defaults, nested environment variables, errors that name the variable."""

from __future__ import annotations

import pytest

from stream_rec.config import SettingsError, load_settings


def test_defaults_match_the_documented_topics() -> None:
    settings = load_settings()
    assert settings.topics.events == "stream-rec.events"
    assert settings.topics.profiles == "stream-rec.profiles"
    assert settings.topics.recommendations == "stream-rec.recommendations"
    assert settings.topics.metrics == "stream-rec.metrics"
    assert settings.topics.dead_letter == "stream-rec.dead-letter"
    assert settings.worker.auto_offset_reset == "earliest"


def test_the_two_first_settings_and_nested_model_params(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_REC_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("STREAM_REC_REDIS__URL", "redis://r:6380/2")
    monkeypatch.setenv("STREAM_REC_MODEL__FACTORS", "64")
    settings = load_settings()
    assert settings.kafka.client_options()["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert settings.redis.url == "redis://r:6380/2"
    assert settings.model.factors == 64


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STREAM_REC_MODEL__FACTORS", "0"),
        ("STREAM_REC_MODEL__LEARNING_RATE", "fast"),
        ("STREAM_REC_WORKER__AUTO_OFFSET_RESET", "middle"),
        ("STREAM_REC_REDIS__URL", "http://nope"),
        ("STREAM_REC_METRICS__PORT", "70000"),
        ("STREAM_REC_TOPICS__PARTITIONS", "-1"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=name):
        load_settings()


def test_a_misspelt_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_REC_REDIS__URI", "redis://x")
    with pytest.raises(SettingsError, match="unknown setting STREAM_REC_REDIS__URI"):
        load_settings()


def test_secrets_are_masked_and_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_REC_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("STREAM_REC_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("STREAM_REC_REDIS__URL", "redis://user:s3cret@host:6379/0")
    settings = load_settings()
    assert "hunter2" not in settings.model_dump_json()
    assert settings.kafka.client_options()["sasl_plain_password"] == "hunter2"
    assert settings.redis.redacted_url() == "redis://user:***@host:6379/0"
