"""MovieLens folders as their publisher ships them: ratings plus the side files.

- ``movielens-csv`` (ml-latest, ml-latest-small, ml-25m): ``ratings.csv``; ``movies.csv``
  gives genres and the release decade (from the title's year); ``tags.csv`` gives tags,
  each from the time it was applied.
- ``movielens-100k``: ``u.data``; ``u.user`` gives age, gender, occupation; ``u.item``
  gives genre flags and the release decade.
- ``movielens-1m``: ``ratings.dat``; ``users.dat`` gives gender, age, occupation;
  ``movies.dat`` gives genres and the decade.

Features are tokens ``"name=value"``. Missing side files give no features, not an error.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
import numpy.typing as npt

MovieLensFormat = Literal["movielens-csv", "movielens-100k", "movielens-1m"]
RATINGS_FILE: dict[MovieLensFormat, str] = {
    "movielens-csv": "ratings.csv",
    "movielens-100k": "u.data",
    "movielens-1m": "ratings.dat",
}
_SOURCE = {"movielens-csv": "ml", "movielens-100k": "ml100k", "movielens-1m": "ml1m"}
_YEAR = re.compile(r"\((\d{4})\)\s*$")
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


class DatasetError(ValueError):
    """The dataset is missing or not in the stated format; the message says where."""


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


@dataclass(frozen=True)
class SideInfo:
    """Features per user and item (tokens), each item's genres (for diversity), and item
    tags in the order they were applied: ``(unix seconds, item, "tag=...")``. Tags are
    user-made over time, so a replay may only know those applied before an event."""

    user_features: dict[str, list[str]] = field(default_factory=dict)
    item_features: dict[str, list[str]] = field(default_factory=dict)
    item_genres: dict[str, frozenset[str]] = field(default_factory=dict)
    timed_item_features: list[tuple[float, str, str]] = field(default_factory=list)


def ratings_path(path: Path, fmt: MovieLensFormat) -> Path:
    """The ratings file of a dataset folder (or ``path`` itself if it is a file)."""
    if path.is_file():
        return path
    candidate = path / RATINGS_FILE[fmt]
    if not candidate.exists():
        raise DatasetError(f"{path}: no {RATINGS_FILE[fmt]} in this folder (format {fmt})")
    return candidate


def load_ratings(path: Path, fmt: MovieLensFormat) -> Ratings:
    """Read a MovieLens ratings file into columns, sorted by timestamp (stable)."""
    file = ratings_path(path, fmt)
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    stamps: list[float] = []
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            for line_no, row in enumerate(_rating_rows(handle, fmt), start=1):
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
    return Ratings(
        np.asarray(users)[order],
        np.asarray(items)[order],
        np.asarray(ratings, np.float64)[order],
        np.asarray(stamps, np.float64)[order],
        _SOURCE[fmt],
    )


def load_side_info(path: Path, fmt: MovieLensFormat) -> SideInfo:
    """User demographics and item metadata from the side files next to the ratings."""
    folder = path if path.is_dir() else path.parent
    if fmt == "movielens-csv":
        return _side_csv(folder)
    if fmt == "movielens-100k":
        return _side_100k(folder)
    return _side_1m(folder)


def _rating_rows(handle: TextIO, fmt: MovieLensFormat) -> Iterator[list[str]]:
    if fmt == "movielens-csv":
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["userId", "movieId"]:
            raise DatasetError(f"expected a userId,movieId,... header, got {header}")
        yield from reader
    else:
        separator = "\t" if fmt == "movielens-100k" else "::"
        for line in handle:
            if line.strip():
                yield line.rstrip("\n").split(separator)


def _decade(title: str) -> list[str]:
    match = _YEAR.search(title)
    return [f"decade={int(match.group(1)) // 10 * 10}s"] if match else []


def _age_bucket(age: int) -> str:
    for limit, name in ((18, "<18"), (25, "18-24"), (35, "25-34"), (45, "35-44"), (56, "45-55")):
        if age < limit:
            return name
    return "56+"


def _side_csv(folder: Path) -> SideInfo:
    items: dict[str, list[str]] = {}
    genres: dict[str, frozenset[str]] = {}
    movies = folder / "movies.csv"
    if movies.exists():
        with movies.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                names = [g for g in row["genres"].split("|") if g and g != "(no genres listed)"]
                genres[row["movieId"]] = frozenset(names)
                items[row["movieId"]] = [f"genre={g}" for g in names] + _decade(row["title"])
    timed: list[tuple[float, str, str]] = []
    tags = folder / "tags.csv"
    if tags.exists():
        with tags.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                timed.append(
                    (float(row["timestamp"]), row["movieId"], f"tag={row['tag'].strip().lower()}")
                )
        timed.sort(key=lambda entry: entry[0])
    return SideInfo({}, items, genres, timed)


def _side_100k(folder: Path) -> SideInfo:
    users: dict[str, list[str]] = {}
    if (folder / "u.user").exists():
        for line in (folder / "u.user").read_text(encoding="latin-1").splitlines():
            parts = line.split("|")
            if len(parts) >= 4:
                users[parts[0]] = [
                    f"age={_age_bucket(int(parts[1]))}",
                    f"gender={parts[2]}",
                    f"occupation={parts[3]}",
                ]
    items: dict[str, list[str]] = {}
    genres: dict[str, frozenset[str]] = {}
    if (folder / "u.item").exists():
        for line in (folder / "u.item").read_text(encoding="latin-1").splitlines():
            parts = line.split("|")
            if len(parts) < 5 + len(ML100K_GENRES):
                continue
            flags = parts[5 : 5 + len(ML100K_GENRES)]
            names = [
                g for g, f in zip(ML100K_GENRES, flags, strict=True) if f == "1" and g != "unknown"
            ]
            genres[parts[0]] = frozenset(names)
            items[parts[0]] = [f"genre={g}" for g in names] + _decade(parts[1])
    return SideInfo(users, items, genres)


def _side_1m(folder: Path) -> SideInfo:
    users: dict[str, list[str]] = {}
    if (folder / "users.dat").exists():
        for line in (folder / "users.dat").read_text(encoding="latin-1").splitlines():
            parts = line.split("::")
            if len(parts) >= 4:
                users[parts[0]] = [
                    f"gender={parts[1]}",
                    f"age={parts[2]}",
                    f"occupation={parts[3]}",
                ]
    items: dict[str, list[str]] = {}
    genres: dict[str, frozenset[str]] = {}
    if (folder / "movies.dat").exists():
        for line in (folder / "movies.dat").read_text(encoding="latin-1").splitlines():
            parts = line.split("::")
            if len(parts) >= 3:
                names = [g for g in parts[2].split("|") if g]
                genres[parts[0]] = frozenset(names)
                items[parts[0]] = [f"genre={g}" for g in names] + _decade(parts[1])
    return SideInfo(users, items, genres)
