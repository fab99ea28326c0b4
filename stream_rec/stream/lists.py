"""Recommendation messages of the wire contract, built in one place for every producer."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import orjson

from stream_rec.model import HybridModel


def list_message(
    user_id: str,
    items: Sequence[tuple[str, float]],
    version: int,
    model_name: str,
    event_ts: float,
    generated_at: float,
    context: Mapping[str, str] | None = None,
) -> bytes:
    """The JSON recommendation message (scores rounded to 6 places; ``context`` only
    when the list was scored for one).

    >>> list_message("u1", [("i9", 0.5)], 3, "m", 10.0, 11.0)
    b'{"user_id":"u1","items":[{"item_id":"i9","score":0.5}],"version":3,"model":"m","event_ts":10.0,"generated_at":11.0}'
    """
    body: dict[str, object] = {
        "user_id": user_id,
        "items": [{"item_id": item, "score": round(score, 6)} for item, score in items],
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
        (ids[i], s) for i, s in zip(rows[0].tolist(), scores[0].tolist(), strict=True) if i >= 0
    ]
    return list_message(user_id, items, model.version(row), model_name, when, now, context)
