"""Datasets as messages to produce: wire-contract events, in time order.

Formats (PATH is the dataset's folder as its publisher ships it, or its ratings file):
- ``movielens-csv``: ml-latest / ml-latest-small / ml-25m, ``ratings.csv``
  (userId,movieId,rating,timestamp)
- ``movielens-100k``: ``u.data`` (user, item, rating, timestamp; tab-separated)
- ``movielens-1m``: ``ratings.dat`` (UserID::MovieID::Rating::Timestamp)
- ``jsonl``: one wire-contract event per line, sent as it is

Order is by timestamp, stable (ties keep file order), so a replay is reproducible.
The MovieLens parsing lives in :mod:`stream_rec.evaluation.movielens`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import orjson

from stream_rec.evaluation.movielens import DatasetError, load_ratings, load_side_info

DatasetFormat = Literal["movielens-csv", "movielens-100k", "movielens-1m", "jsonl"]
FORMATS: tuple[DatasetFormat, ...] = ("movielens-csv", "movielens-100k", "movielens-1m", "jsonl")


@dataclass(frozen=True)
class KeyedMessage:
    """One message to produce: key = user id (UTF-8), value = the event's JSON bytes."""

    key: bytes | None
    value: bytes
    ts: float


def load_messages(path: Path, fmt: DatasetFormat) -> Iterator[KeyedMessage]:
    """The dataset as messages to produce, in time order."""
    if fmt != "jsonl":
        for event in load_ratings(path, fmt).events():
            yield KeyedMessage(event["user_id"].encode(), orjson.dumps(event), event["ts"])
        return
    if not path.is_file():
        raise DatasetError(f"{path}: jsonl needs a .jsonl file, not a folder")
    yield from _jsonl_messages(path)


def _jsonl_messages(file: Path) -> Iterator[KeyedMessage]:
    """Lines as they are (bad ones too: the worker dead-letters them), stably sorted by ts.

    A line whose ts cannot be read keeps the position of the line before it.
    """
    messages: list[KeyedMessage] = []
    last_ts = 0.0
    with file.open("rb") as handle:
        for raw in handle:
            line = raw.rstrip(b"\r\n")
            if not line.strip():
                continue
            key: bytes | None = None
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                ts = obj.get("ts")
                if isinstance(ts, int | float) and not isinstance(ts, bool):
                    last_ts = float(ts)
                if isinstance(obj.get("user_id"), str):
                    key = obj["user_id"].encode()
            messages.append(KeyedMessage(key, line, last_ts))
    order = np.argsort(
        np.fromiter((m.ts for m in messages), np.float64, len(messages)), kind="stable"
    )
    for index in order.tolist():
        yield messages[index]


def load_profile_messages(path: Path, fmt: DatasetFormat) -> list[KeyedMessage]:
    """The dataset's side files as profile messages (user demographics, item metadata),
    to write to the profiles topic before the events; none for jsonl."""
    if fmt == "jsonl":
        return []
    side = load_side_info(path, fmt)
    messages = [
        KeyedMessage(
            user.encode(),
            orjson.dumps({"type": "user_profile", "user_id": user, "features": _features(tokens)}),
            0.0,
        )
        for user, tokens in side.user_features.items()
    ]
    messages += [
        KeyedMessage(
            item.encode(),
            orjson.dumps({"type": "item_metadata", "item_id": item, "features": _features(tokens)}),
            0.0,
        )
        for item, tokens in side.item_features.items()
        if tokens
    ]
    return messages


def _features(tokens: list[str]) -> dict[str, str | list[str]]:
    """Tokens "name=value" back into a features object (names seen twice become lists).

    >>> _features(["genre=Drama", "genre=War", "decade=1990s"])
    {'genre': ['Drama', 'War'], 'decade': '1990s'}
    """
    grouped: dict[str, list[str]] = {}
    for token in tokens:
        name, _, value = token.partition("=")
        grouped.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}
