"""Helpers shared by the unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from stream_rec.model import KIND_NAMES, InteractionBatch


def batch_of_events(events: Sequence[dict[str, Any]]) -> InteractionBatch:
    """Wire-contract event dicts (as :class:`SyntheticWorld` writes them) as one batch, with
    their times and contexts."""
    return InteractionBatch.from_columns(
        [e["user_id"] for e in events],
        [e["item_id"] for e in events],
        [int(KIND_NAMES[e["type"]]) for e in events],
        [float(e.get("rating", e.get("watch_seconds", 0.0))) for e in events],
        [float(e.get("duration_seconds", np.nan)) for e in events],
        [float(e["ts"]) for e in events],
        [e.get("context") for e in events],
    )
