"""The model's input: a batch of interactions in columns, in the order they are applied."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt


class EventKind(IntEnum):
    """Interaction types, as the kernels see them (int8 codes)."""

    IMPRESSION = 0
    CLICK = 1
    WATCH = 2
    RATING = 3


KIND_NAMES: dict[str, EventKind] = {kind.name.lower(): kind for kind in EventKind}
"""Wire names ("click", ...) to codes."""

CONSUMED_KINDS = frozenset({EventKind.CLICK, EventKind.WATCH, EventKind.RATING})
"""Kinds that mark an item as taken by the user, so it is no longer recommended to them."""


@dataclass(frozen=True)
class InteractionBatch:
    """n interactions, applied in index order.

    - ``kinds``: int8 :class:`EventKind` codes, shape (n,)
    - ``values``: float32, the rating for ratings, watched seconds for watches, else 0
    - ``durations``: float32 item duration in seconds for watches, NaN where unknown
    - ``timestamps``: float64 unix seconds of each event
    - ``contexts``: each event's context mapping (``{"device": "tv"}``) or None, or None
      for a batch without any (see :mod:`stream_rec.model.context`)
    """

    user_ids: Sequence[str]
    item_ids: Sequence[str]
    kinds: npt.NDArray[np.int8]
    values: npt.NDArray[np.float32]
    durations: npt.NDArray[np.float32]
    timestamps: npt.NDArray[np.float64]
    contexts: Sequence[Mapping[str, str] | None] | None = None

    def __post_init__(self) -> None:
        n = len(self.user_ids)
        lengths = {
            len(self.item_ids),
            len(self.kinds),
            len(self.values),
            len(self.durations),
            len(self.timestamps),
            n if self.contexts is None else len(self.contexts),
        }
        if lengths != {n}:
            raise ValueError(f"columns of unequal length: {sorted(lengths | {n})}")

    def __len__(self) -> int:
        return len(self.user_ids)

    def slice(self, start: int, stop: int) -> InteractionBatch:
        """Events ``start`` to ``stop`` (views of the arrays, no copies)."""
        return InteractionBatch(
            self.user_ids[start:stop],
            self.item_ids[start:stop],
            self.kinds[start:stop],
            self.values[start:stop],
            self.durations[start:stop],
            self.timestamps[start:stop],
            None if self.contexts is None else self.contexts[start:stop],
        )

    @staticmethod
    def from_columns(
        user_ids: Sequence[str],
        item_ids: Sequence[str],
        kinds: Sequence[int],
        values: Sequence[float],
        durations: Sequence[float] | None = None,
        timestamps: Sequence[float] | None = None,
        contexts: Sequence[Mapping[str, str] | None] | None = None,
    ) -> InteractionBatch:
        """Build a batch from Python sequences (durations NaN and timestamps 0 if omitted)."""
        n = len(user_ids)
        return InteractionBatch(
            user_ids,
            item_ids,
            np.asarray(kinds, np.int8),
            np.asarray(values, np.float32),
            np.full(n, np.nan, np.float32)
            if durations is None
            else np.asarray(durations, np.float32),
            np.zeros(n, np.float64) if timestamps is None else np.asarray(timestamps, np.float64),
            contexts,
        )
