"""Dataset loaders: public rating datasets as wire-contract events, in time order.

Formats (PATH is the dataset's folder as its publisher ships it, or its ratings file):
- ``movielens-csv``: ml-latest / ml-latest-small / ml-25m, ``ratings.csv``
  (userId,movieId,rating,timestamp)
- ``movielens-100k``: ``u.data`` (user, item, rating, timestamp; tab-separated)
- ``movielens-1m``: ``ratings.dat`` (UserID::MovieID::Rating::Timestamp)
- ``jsonl``: one wire-contract event per line, sent as it is

Order is by timestamp, stable (ties keep file order), so a replay is reproducible.
Ratings are held in numpy columns and turned into events lazily, so that large files fit.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
import numpy.typing as npt
import orjson

DatasetFormat = Literal["movielens-csv", "movielens-100k", "movielens-1m", "jsonl"]
FORMATS: tuple[DatasetFormat, ...] = ("movielens-csv", "movielens-100k", "movielens-1m", "jsonl")

_RATINGS_FILE = {
    "movielens-csv": "ratings.csv",
    "movielens-100k": "u.data",
    "movielens-1m": "ratings.dat",
}


class DatasetError(ValueError):
    """The dataset is missing or not in the stated format; the message says where."""


@dataclass(frozen=True)
class KeyedMessage:
    """One message to produce: key = user id (UTF-8), value = the event's JSON bytes."""

    key: bytes | None
    value: bytes
    ts: float


@dataclass(frozen=True)
class Ratings:
    """Rating columns, already in time order."""

    users: npt.NDArray[np.str_]
    items: npt.NDArray[np.str_]
    ratings: npt.NDArray[np.float64]
    timestamps: npt.NDArray[np.float64]
    source: str

    def __len__(self) -> int:
        return int(self.ratings.shape[0])

    def events(self) -> Iterator[dict[str, Any]]:
        """Wire-contract rating events, event_id derived from the row (stable)."""
        for user, item, rating, ts in zip(
            self.users.tolist(),
            self.items.tolist(),
            self.ratings.tolist(),
            self.timestamps.tolist(),
            strict=True,
        ):
            yield {
                "event_id": f"{self.source}-{user}-{item}-{int(ts)}",
                "type": "rating",
                "user_id": user,
                "item_id": item,
                "ts": ts,
                "rating": rating,
            }


def ratings_file(path: Path, fmt: DatasetFormat) -> Path:
    """The ratings file of a dataset folder (or ``path`` itself if it is a file)."""
    if path.is_file():
        return path
    if fmt == "jsonl":
        raise DatasetError(f"{path}: jsonl needs a .jsonl file, not a folder")
    candidate = path / _RATINGS_FILE[fmt]
    if not candidate.exists():
        raise DatasetError(f"{path}: no {_RATINGS_FILE[fmt]} in this folder (format {fmt})")
    return candidate


def load_ratings(path: Path, fmt: DatasetFormat) -> Ratings:
    """Read a MovieLens ratings file into columns, sorted by timestamp (stable)."""
    if fmt == "jsonl":
        raise DatasetError("jsonl holds events, not a ratings table: use load_messages")
    file = ratings_file(path, fmt)
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    stamps: list[float] = []
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            for line_no, row in enumerate(_rows(handle, fmt), start=1):
                if len(row) < 4:
                    raise DatasetError(f"{file}:{line_no}: expected 4 fields, got {len(row)}")
                users.append(row[0])
                items.append(row[1])
                ratings.append(float(row[2]))
                stamps.append(float(row[3]))
    except ValueError as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{file}: not a {fmt} ratings file ({exc})") from exc
    order = np.argsort(np.asarray(stamps), kind="stable")
    source = {"movielens-csv": "ml", "movielens-100k": "ml100k", "movielens-1m": "ml1m"}[fmt]
    return Ratings(
        np.asarray(users)[order],
        np.asarray(items)[order],
        np.asarray(ratings, np.float64)[order],
        np.asarray(stamps, np.float64)[order],
        source,
    )


def _rows(handle: TextIO, fmt: DatasetFormat) -> Iterator[list[str]]:
    if fmt == "movielens-csv":
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["userId", "movieId"]:
            raise DatasetError(f"expected a userId,movieId,... header, got {header}")
        yield from reader
    elif fmt == "movielens-100k":
        for line in handle:
            if line.strip():
                yield line.split("\t")
    else:
        for line in handle:
            if line.strip():
                yield line.rstrip("\n").split("::")


def load_messages(path: Path, fmt: DatasetFormat) -> Iterator[KeyedMessage]:
    """The dataset as messages to produce, in time order."""
    if fmt != "jsonl":
        for event in load_ratings(path, fmt).events():
            yield KeyedMessage(event["user_id"].encode(), orjson.dumps(event), event["ts"])
        return
    yield from _jsonl_messages(ratings_file(path, fmt))


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
