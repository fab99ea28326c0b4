"""Settings: pydantic-settings, environment prefix ``STREAM_REC_``, groups nested by ``__``.

The two a user sets first are ``STREAM_REC_KAFKA__BOOTSTRAP_SERVERS`` and
``STREAM_REC_REDIS__URL``. Every field is documented; :func:`load_settings` turns any bad
value, and any unknown ``STREAM_REC_*`` variable, into a :class:`SettingsError` whose
message names the variable.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import textwrap
from collections.abc import Mapping
from itertools import pairwise
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_rec.model.params import ModelParams

ENV_PREFIX = "STREAM_REC_"
_NESTED = "__"


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Group):
    """How to reach the Kafka cluster (``STREAM_REC_KAFKA__*``)."""

    bootstrap_servers: str = Field("127.0.0.1:9092", min_length=1)
    """Comma-separated host:port list of brokers."""
    client_id: str = "stream-rec"
    """Client id the broker logs and quotas see."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How clients talk to the brokers; SSL/SASL_SSL encrypt."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    """SASL mechanism, with SASL_PLAINTEXT or SASL_SSL."""
    sasl_username: str | None = None
    """SASL user name."""
    sasl_password: SecretStr | None = None
    """SASL password (a secret: masked in output, never logged)."""
    ssl_cafile: str | None = None
    """CA bundle that signs the brokers' certificates."""
    ssl_certfile: str | None = None
    """Client certificate, for mutual TLS."""
    ssl_keyfile: str | None = None
    """Client private key, for mutual TLS."""
    session_timeout_ms: int = Field(10_000, ge=1_000)
    """Consumer group session timeout; a worker silent this long loses its partitions."""
    heartbeat_interval_ms: int = Field(2_000, ge=100)
    """How often a group member heartbeats (well under the session timeout)."""
    max_poll_interval_ms: int = Field(300_000, ge=1_000)
    """A member that does not poll for this long leaves the group."""
    request_timeout_ms: int = Field(30_000, ge=1_000)
    """How long a client waits for any broker response."""

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments shared by every kafka-python client (secrets revealed here only)."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        return options


class RedisSettings(_Group):
    """Where the model state lives (``STREAM_REC_REDIS__*``)."""

    url: str = Field(
        "redis://127.0.0.1:6379/0",
        pattern=r"^(redis|rediss|unix|redis\+cluster|rediss\+cluster)://",
    )
    """redis://[user:password@]host:port/db; rediss:// for TLS; redis+cluster://host:port
    (or rediss+cluster://) for a Redis Cluster, naming any of its nodes."""
    password: SecretStr | None = None
    """Overrides a password in the URL; keep it here so it never shows in a logged URL."""
    key_prefix: str = Field("stream-rec", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    """Every key starts with this, so that several deployments share one Redis."""
    socket_timeout_seconds: float = Field(5.0, gt=0)
    """A Redis call that takes longer counts as a failure (and is retried)."""

    def redacted_url(self) -> str:
        """The URL with any password replaced by ``***``, safe to log."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))


class TopicSettings(_Group):
    """Topic names and how missing topics are created (``STREAM_REC_TOPICS__*``)."""

    events: str = "stream-rec.events"
    """Interaction events in (key = user id)."""
    profiles: str = "stream-rec.profiles"
    """User profiles and item metadata in."""
    recommendations: str = "stream-rec.recommendations"
    """Top-k lists out (key = user id; compacted)."""
    metrics: str = "stream-rec.metrics"
    """Metric snapshots out."""
    dead_letter: str = "stream-rec.dead-letter"
    """Rejected messages, unchanged, with the reason in headers."""
    partitions: int = Field(4, ge=1, le=10_000)
    """Partitions of the events topic when stream-rec creates it (its unit of scale-out)."""
    replication_factor: int = Field(1, ge=1, le=16)
    """Replicas of each topic stream-rec creates (3 in production clusters)."""
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    """Broker-side size limit set on the topics stream-rec creates; the dead-letter topic
    must take whatever the events topic took."""


class WorkerSettings(_Group):
    """The trainer worker's loop (``STREAM_REC_WORKER__*``)."""

    group_id: str = Field("stream-rec-trainer", min_length=1)
    """Consumer group of the trainer workers; all workers of one model share it."""
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    """Where a new consumer group starts; earliest applies events written before it joined."""
    batch_max_events: int = Field(50_000, ge=1, le=1_000_000)
    """A micro-batch closes at this many records (under a backlog: larger batches share
    one list refresh among a user's events and one commit among more events)..."""
    batch_max_seconds: float = Field(0.1, gt=0, le=60)
    """...or this long after its first record arrived, whichever comes first."""
    commit_interval_seconds: float = Field(1.0, ge=0, le=60)
    """Every batch's lists are published at once; its state goes to Redis (with the
    offsets, in one atomic step) at most this long after the previous commit, together
    with every batch since, and at once when the stream is idle, on revocation and on
    exit. A crash replays the uncommitted batches, republishing the same lists with the
    same versions. 0 commits every batch."""
    shared_refresh_seconds: float = Field(5.0, gt=0, le=3600)
    """With several workers, items and feature embeddings are shared: each commit merges
    this worker's changes onto the stored rows, and at most this often the worker takes
    the stored rows of every shared row (other workers' steps) in place of its copy."""
    max_event_bytes: int = Field(65_536, ge=256)
    """Larger messages are rejected as oversize (to the dead-letter topic)."""
    retry_initial_seconds: float = Field(0.1, gt=0)
    """First pause after a failed Redis or broker call; doubles up to the maximum."""
    retry_max_seconds: float = Field(5.0, gt=0)
    """Longest pause between retries."""
    model_name: str = "stream-rec"
    """The ``model`` field of published lists."""
    dedup_window: int = Field(100_000, ge=0, le=100_000_000)
    """An event id seen among a partition's last this many offsets is not applied again
    (0 turns de-duplication off)."""
    list_ttl_seconds: int = Field(30 * 86_400, ge=0)
    """Lists stored in Redis expire after this long without an update (0: never)."""
    instance_id: str | None = None
    """A stable name for this worker (Kafka static membership): a restarted worker with
    the same name takes its partitions back without a rebalance. Unique per worker."""


class MetricsSettings(_Group):
    """The Prometheus endpoint (``STREAM_REC_METRICS__*``)."""

    host: str = "127.0.0.1"
    """Bind address of /metrics; 0.0.0.0 exposes it beyond this machine."""
    port: int = Field(9400, ge=0, le=65_535)
    """0 turns the endpoint off."""
    lag_interval_seconds: float = Field(5.0, gt=0)
    """How often the consumer lag per partition is read from Kafka."""
    snapshot_seconds: float = Field(10.0, ge=0)
    """How often a JSON snapshot of the metrics goes to the metrics topic (0: never)."""


class HttpSettings(_Group):
    """The HTTP API and the live page of `stream-rec serve` (``STREAM_REC_HTTP__*``)."""

    host: str = "127.0.0.1"
    """Bind address; 0.0.0.0 exposes the API beyond this machine (set a token then)."""
    port: int = Field(8080, ge=0, le=65_535)
    """TCP port of the API and the page (0: any free port)."""
    token: SecretStr | None = Field(None, min_length=16)
    """When set, POST requests must carry `Authorization: Bearer <token>` (a secret: masked
    in output, never logged; at least 16 characters)."""
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    """Larger request bodies are refused with 413 before they are read."""
    max_cached_lists: int = Field(250_000, ge=0)
    """Latest lists kept in the server's memory, fed by the recommendations topic (the least
    recently updated go first; about 0.8 KB a 10-item list); other users' lists are read
    from Redis."""


class Settings(BaseSettings):
    """All of stream-rec's settings; read from ``STREAM_REC_*`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=_NESTED, extra="forbid", frozen=True
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Level of stream-rec's log lines (to stderr)."""
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    topics: TopicSettings = TopicSettings()
    worker: WorkerSettings = WorkerSettings()
    metrics: MetricsSettings = MetricsSettings()
    http: HttpSettings = HttpSettings()
    model: ModelParams = ModelParams()


class SettingsError(ValueError):
    """Start-up must stop: a setting is invalid. The message names the variable."""


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable of a validation error location.

    >>> env_name(("kafka", "bootstrap_servers"))
    'STREAM_REC_KAFKA__BOOTSTRAP_SERVERS'
    """
    return ENV_PREFIX + _NESTED.join(str(part).upper() for part in loc)


def _known_variables() -> set[str]:
    names: set[str] = set()
    for group, field in Settings.model_fields.items():
        annotation = field.annotation
        inner = getattr(annotation, "model_fields", None) or getattr(
            annotation, "__dataclass_fields__", {}
        )
        names.add(env_name((group,)))
        names.update(env_name((group, name)) for name in inner)
    return names


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment, plus explicit overrides (which win).

    Raises :class:`SettingsError` naming the variable for a bad value or a misspelt name.
    """
    known = _known_variables() | _KNOWN_EXTRA
    unknown = sorted(
        name
        for name in os.environ
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known
    )
    if unknown:
        raise SettingsError(
            f"unknown setting {unknown[0]}: not one of stream-rec's settings (see README)"
        )
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        shown = f" (got {error['input']!r})" if _printable(error) else ""
        raise SettingsError(
            f"invalid setting {env_name(error['loc'])}: {error['msg']}{shown}"
        ) from None


# Variables with our prefix that are read by other parts (tests, the cache), not Settings.
_KNOWN_EXTRA = frozenset(
    {
        "STREAM_REC_CACHE_DIR",
        "STREAM_REC_CRASH_AT",
        "STREAM_REC_KAFKA_LIBS",
        "STREAM_REC_KAFKA_BOOTSTRAP",
        "STREAM_REC_REDIS_URL",
        "STREAM_REC_REDIS_CLUSTER_URL",
    }
)


def _printable(error: Mapping[str, Any]) -> bool:
    """Whether an error's input may be echoed: scalars only, never secrets."""
    loc = error.get("loc", ())
    secret = any(word in str(part) for part in loc for word in ("password", "token"))
    return not secret and isinstance(error.get("input"), str | int | float)


def settings_reference() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) of every setting, from the fields' docstrings."""
    rows: list[tuple[str, str, str]] = []
    top_docs = _field_docs(Settings)
    for group, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and (
            issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)
        ):
            docs = _field_docs(annotation)
            defaults = _defaults(annotation)
            rows += [
                (env_name((group, n)), _shown(d), docs.get(n, "")) for n, d in defaults.items()
            ]
        else:
            rows.append((env_name((group,)), _shown(field.default), top_docs.get(group, "")))
    return rows


def settings_markdown() -> str:
    """The settings table of the README."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, default, doc in settings_reference():
        lines.append(f"| `{name}` | {f'`{default}`' if default else ''} | {doc} |")
    return "\n".join(lines)


def _defaults(cls: type) -> dict[str, Any]:
    if dataclasses.is_dataclass(cls):
        return {f.name: f.default for f in dataclasses.fields(cls)}
    fields: dict[str, Any] = getattr(cls, "model_fields", {})
    return {name: f.default for name, f in fields.items()}


def _shown(value: Any) -> str:
    return "" if value is None else str(value)


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field), folded to one line."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, following in pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            text = " ".join(following.value.value.split()).replace("``", "`")
            docs[node.target.id] = text.replace("|", "\\|")
    return docs
