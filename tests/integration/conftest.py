"""Fixtures of the integration suite (real Kafka broker, real Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from stream_rec.config import Settings
from tests.integration.support import settings_for


@pytest.fixture
def settings(kafka_server: Any, redis_server: Any, unique: str) -> Settings:
    return settings_for(kafka_server.bootstrap, redis_server.url, unique, kafka_server.flavor)
