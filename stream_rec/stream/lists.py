"""Recommendation messages of the wire contract, built in one place for every producer."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt
import orjson

from stream_rec.model import HybridModel


def rounded_scores(scores: npt.NDArray[np.float32]) -> list[list[float]]:
    """Scores (m, k) as the lists' rows of floats, rounded to 6 places (at once: a
    Python ``round`` per score cost more than the JSON).

    >>> rounded_scores(np.array([[0.1234567, -np.inf]], np.float32))
    [[0.123457, -inf]]
    """
    rounded: list[list[float]] = np.round(scores.astype(np.float64), 6).tolist()
    return rounded


def list_message(
    user_id: str,
    items: Iterable[tuple[str, float]],
    version: int,
    model_name: str,
    event_ts: float,
    generated_at: float,
    context: Mapping[str, str] | None = None,
) -> bytes:
    """The JSON recommendation message (``items``: (id, score) pairs, scores as given -
    see :func:`rounded_scores`; ``context`` only when the list was scored for one).

    >>> list_message("u1", [("i9", 0.5)], 3, "m", 10.0, 11.0)
    b'{"user_id":"u1","items":[{"item_id":"i9","score":0.5}],"version":3,"model":"m","event_ts":10.0,"generated_at":11.0}'
    """
    body: dict[str, object] = {
        "user_id": user_id,
        "items": [{"item_id": item, "score": score} for item, score in items],
        "version": version,
        "model": model_name,
        "event_ts": event_ts,
        "generated_at": generated_at,
    }
    if context:
        body["context"] = dict(context)
    return orjson.dumps(body)


def list_for_context(
    model: HybridModel,
    user_id: str,
    context: Mapping[str, str],
    model_name: str,
    ts: float | None = None,
    k: int | None = None,
) -> bytes | None:
    """A list for ``user_id`` scored now in ``context`` (at time ``ts`` for the hour band,
    now by default); None for a user the model does not hold."""
    row = model.users.row_of(user_id)
    if row is None:
        return None
    now = time.time()
    when = now if ts is None else ts
    contexts = model.contexts.lookup([context], [when])
    rows, scores = model.recommend(np.array([row], np.int64), k, contexts=contexts)
    ids = model.items.ids
    items = [
        (ids[i], s)
        for i, s in zip(rows[0].tolist(), rounded_scores(scores)[0], strict=True)
        if i >= 0
    ]
    return list_message(user_id, items, model.version(row), model_name, when, now, context)
