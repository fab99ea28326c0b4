"""A synthetic world with planted tastes, for the demo and the tests.

Items belong to genres and have Zipf popularity within them. Each user likes two genres;
a user's demographic segment (age bucket x gender) decides those genres with probability
``segment_strength`` (a planted demographic effect). Consumed items (clicks, watches,
ratings) come from the liked genres with probability ``taste_strength``; liked items are
watched longer and rated higher. Impressions are drawn from overall popularity. With
``context_strength`` > 0 every event carries a device, and what is taken on a device
comes from that device's genres with that probability (a planted context effect: the
same user watches documentaries on TV and comedies on the phone).
Everything is reproducible from the seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_rec.evaluation.movielens import ML100K_GENRES

GENRES = (
    "action",
    "comedy",
    "drama",
    "horror",
    "romance",
    "scifi",
    "documentary",
    "animation",
)
AGE_BUCKETS = ("18-24", "25-34", "35-49", "50+")
GENDERS = ("f", "m")
OCCUPATIONS = ("student", "engineer", "artist", "health", "retired", "other")
COUNTRIES = ("de", "fr", "in", "jp", "us", "br")
DEVICE_GENRES = {"mobile": ("comedy", "animation"), "tv": ("documentary", "drama")}
"""The planted context effect: the genres taken on each device."""
EVENT_MIX = {"impression": 0.40, "click": 0.25, "watch": 0.20, "rating": 0.15}
"""The demo's event-type mix (fractions of the stream)."""


@dataclass(frozen=True)
class SyntheticWorld:
    """Users, items and their planted relation. Build with :meth:`create`."""

    n_users: int
    n_items: int
    item_genres: list[list[str]]
    item_duration: npt.NDArray[np.float64]
    item_weight: npt.NDArray[np.float64]
    user_likes: list[tuple[int, int]]
    user_features: list[dict[str, str]]
    user_activity: npt.NDArray[np.float64]
    taste_strength: float
    seed: int
    context_strength: float
    _device_items: dict[str, npt.NDArray[np.int64]] = field(repr=False)
    _device_cdf: dict[str, npt.NDArray[np.float64]] = field(repr=False)
    _liked_items: list[npt.NDArray[np.int64]] = field(repr=False)
    _liked_cdf: list[npt.NDArray[np.float64]] = field(repr=False)
    _item_cdf: npt.NDArray[np.float64] = field(repr=False)

    @staticmethod
    def create(
        n_users: int = 300,
        n_items: int = 400,
        seed: int = 7,
        taste_strength: float = 0.9,
        segment_strength: float = 0.8,
        popularity_exponent: float = 0.8,
        context_strength: float = 0.0,
    ) -> SyntheticWorld:
        """A world of ``n_users`` and ``n_items``; item popularity falls as
        1/rank**``popularity_exponent`` (0: every item equally popular)."""
        rng = np.random.default_rng(seed)
        n_genres = len(GENRES)
        primary = rng.integers(0, n_genres, n_items)
        item_genres = []
        for g in primary.tolist():
            names = [GENRES[g]]
            if rng.random() < 0.3:
                names.append(GENRES[(g + 1 + int(rng.integers(0, n_genres - 1))) % n_genres])
            item_genres.append(names)
        # Zipf-like popularity: weight 1/rank^exponent over a random order of the items.
        ranks = rng.permutation(n_items) + 1
        weight = 1.0 / ranks.astype(np.float64) ** popularity_exponent
        segments = {
            (age, gender): tuple(sorted(rng.choice(n_genres, 2, replace=False).tolist()))
            for age in AGE_BUCKETS
            for gender in GENDERS
        }
        likes: list[tuple[int, int]] = []
        features: list[dict[str, str]] = []
        for _ in range(n_users):
            age = AGE_BUCKETS[int(rng.integers(0, len(AGE_BUCKETS)))]
            gender = GENDERS[int(rng.integers(0, len(GENDERS)))]
            pair = segments[(age, gender)]
            if rng.random() >= segment_strength:
                pair = tuple(sorted(rng.choice(n_genres, 2, replace=False).tolist()))
            likes.append((int(pair[0]), int(pair[1])))
            features.append(
                {
                    "age": age,
                    "gender": gender,
                    "occupation": OCCUPATIONS[int(rng.integers(0, len(OCCUPATIONS)))],
                    "country": COUNTRIES[int(rng.integers(0, len(COUNTRIES)))],
                }
            )
        genre_index = {g: n for n, g in enumerate(GENRES)}
        item_genre_sets = [{genre_index[g] for g in names} for names in item_genres]
        liked_items = [
            np.array([i for i in range(n_items) if item_genre_sets[i] & set(pair)], np.int64)
            for pair in likes
        ]
        activity = 1.0 / (np.arange(n_users, dtype=np.float64) + 1.0) ** 0.6
        item_weight = weight / weight.sum()
        device_items = {
            device: np.array(
                [i for i in range(n_items) if set(item_genres[i]) & set(genres)], np.int64
            )
            for device, genres in DEVICE_GENRES.items()
        }
        return SyntheticWorld(
            n_users=n_users,
            n_items=n_items,
            item_genres=item_genres,
            item_duration=rng.uniform(300.0, 3600.0, n_items).round(),
            item_weight=item_weight,
            user_likes=likes,
            user_features=features,
            user_activity=activity / activity.sum(),
            taste_strength=taste_strength,
            seed=seed,
            context_strength=context_strength,
            _device_items=device_items,
            _device_cdf={d: _cdf(item_weight[rows]) for d, rows in device_items.items()},
            _liked_items=liked_items,
            _liked_cdf=[_cdf(item_weight[liked]) for liked in liked_items],
            _item_cdf=_cdf(item_weight),
        )

    @staticmethod
    def user_id(user: int) -> str:
        return f"u{user}"

    @staticmethod
    def item_id(item: int) -> str:
        return f"i{item}"

    def genres_of(self, item_id: str) -> list[str]:
        """The genres of an item given by id ("i17")."""
        return self.item_genres[int(item_id.removeprefix("i"))]

    def liked_genres(self, user: int) -> list[str]:
        return [GENRES[g] for g in self.user_likes[user]]

    def liked_item_ids(self, user: int) -> set[str]:
        """The items of the user's liked genres: the planted truth a list should find."""
        return {self.item_id(i) for i in self._liked_items[user].tolist()}

    def profiles(self) -> Iterator[dict[str, Any]]:
        """Wire-contract profile messages: demographics per user, genres per item."""
        for user in range(self.n_users):
            yield {
                "type": "user_profile",
                "user_id": self.user_id(user),
                "features": dict(self.user_features[user]),
            }
        for item in range(self.n_items):
            yield {
                "type": "item_metadata",
                "item_id": self.item_id(item),
                "features": {"genre": list(self.item_genres[item])},
                "duration_seconds": float(self.item_duration[item]),
            }

    def events(
        self, n: int, start_ts: float = 1.7e9, spacing: float = 1.0, seed: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """n wire-contract events in time order (``spacing`` seconds apart)."""
        rng = np.random.default_rng(self.seed + 1 if seed is None else seed)
        types = list(EVENT_MIX)
        type_p = np.array([EVENT_MIX[t] for t in types])
        chunk = 10_000
        for first in range(0, n, chunk):
            size = min(chunk, n - first)
            users = rng.choice(self.n_users, size=size, p=self.user_activity).tolist()
            kinds = rng.choice(len(types), size=size, p=type_p).tolist()
            for offset in range(size):
                e = first + offset
                yield self._event(
                    rng, e, users[offset], types[kinds[offset]], start_ts + e * spacing
                )

    def device_item_ids(self, device: str) -> set[str]:
        """The items of a device's genres: what the planted context effect favours there."""
        return {self.item_id(i) for i in self._device_items[device].tolist()}

    def take_probabilities(self, user: int, device: str | None = None) -> npt.NDArray[np.float64]:
        """The planted chance of each item being the user's next take (on ``device``)."""
        liked = np.zeros(self.n_items)
        rows = self._liked_items[user]
        liked[rows] = self.item_weight[rows] / self.item_weight[rows].sum() if rows.size else 0.0
        taste = self.taste_strength if rows.size else 0.0
        p = taste * liked + (1.0 - taste) * self.item_weight
        if device is None or self.context_strength == 0.0:
            return p
        on_device = np.zeros(self.n_items)
        rows = self._device_items[device]
        on_device[rows] = self.item_weight[rows] / self.item_weight[rows].sum()
        return np.asarray(self.context_strength * on_device + (1.0 - self.context_strength) * p)

    def consumed_item(
        self, rng: np.random.Generator, user: int, device: str | None = None
    ) -> tuple[int, bool]:
        """An item the user takes: on a device, from its genres with probability
        context_strength; otherwise from a liked genre with probability taste_strength."""
        if device is not None and rng.random() < self.context_strength:
            item = int(self._device_items[device][_draw(rng, self._device_cdf[device])])
            return item, self._is_liked(user, item)
        liked = self._liked_items[user]
        if rng.random() < self.taste_strength and liked.size:
            return int(liked[_draw(rng, self._liked_cdf[user])]), True
        item = self.popular_item(rng)
        return item, self._is_liked(user, item)

    def popular_item(self, rng: np.random.Generator) -> int:
        """An item drawn by overall popularity."""
        return _draw(rng, self._item_cdf)

    def _is_liked(self, user: int, item: int) -> bool:
        liked = self._liked_items[user]
        pos = int(np.searchsorted(liked, item))
        return pos < liked.size and int(liked[pos]) == item

    def _event(
        self, rng: np.random.Generator, e: int, user: int, kind: str, ts: float
    ) -> dict[str, Any]:
        device = None
        if self.context_strength > 0:
            device = ("mobile", "tv")[int(rng.integers(0, 2))]
        if kind == "impression":
            item = self.popular_item(rng)
            liked = self._is_liked(user, item)
        else:
            item, liked = self.consumed_item(rng, user, device)
        event: dict[str, Any] = {
            "event_id": f"syn-{self.seed}-{e}",
            "type": kind,
            "user_id": self.user_id(user),
            "item_id": self.item_id(item),
            "ts": round(ts, 3),
        }
        if device is not None:
            event["context"] = {"device": device}
        if kind == "watch":
            duration = float(self.item_duration[item])
            fraction = rng.uniform(0.5, 1.0) if liked else rng.uniform(0.0, 0.3)
            event["watch_seconds"] = round(duration * fraction, 1)
            event["duration_seconds"] = duration
        elif kind == "rating":
            event["rating"] = float(rng.integers(4, 6) if liked else rng.integers(1, 4))
        return event


_ML100K_NAMES = {
    "action": "Action",
    "comedy": "Comedy",
    "drama": "Drama",
    "horror": "Horror",
    "romance": "Romance",
    "scifi": "Sci-Fi",
    "documentary": "Documentary",
    "animation": "Animation",
}
_ML100K_AGES = {"18-24": 21, "25-34": 30, "35-49": 40, "50+": 60}


def write_movielens_100k(world: SyntheticWorld, folder: Path, n_events: int) -> int:
    """The world's ratings among its first ``n_events`` events as an ml-100k-style folder
    (u.data, u.user, u.item), so `stream-rec evaluate` can be checked on a planted
    demographic effect. Returns the number of ratings written."""
    folder.mkdir(parents=True, exist_ok=True)
    ratings = [e for e in world.events(n_events) if e["type"] == "rating"]
    (folder / "u.data").write_text(
        "".join(
            f"{e['user_id'][1:]}\t{e['item_id'][1:]}\t{int(e['rating'])}\t{int(e['ts'])}\n"
            for e in ratings
        )
    )
    (folder / "u.user").write_text(
        "".join(
            f"{u}|{_ML100K_AGES[f['age']]}|{f['gender'].upper()}|{f['occupation']}|00000\n"
            for u, f in enumerate(world.user_features)
        )
    )
    lines = []
    for item, genres in enumerate(world.item_genres):
        names = {_ML100K_NAMES[g] for g in genres}
        flags = "|".join("1" if c in names else "0" for c in ML100K_GENRES)
        lines.append(f"{item}|Item {item} (1995)|01-Jan-1995||http://example.org|{flags}\n")
    (folder / "u.item").write_text("".join(lines))
    return len(ratings)


def _cdf(weight: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    cdf = np.cumsum(weight)
    return np.asarray(cdf / cdf[-1], np.float64)


def _draw(rng: np.random.Generator, cdf: npt.NDArray[np.float64]) -> int:
    """An index drawn with the probabilities whose cumulative sum is ``cdf``."""
    return min(int(np.searchsorted(cdf, rng.random(), side="right")), cdf.size - 1)
