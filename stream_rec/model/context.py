"""Context values of events: what the model learns an embedding for, per event.

An event's ``context`` (``{"device": "tv", "country": "de"}``) becomes the values
``country=de``, ``device=tv`` (name order), plus the UTC hour band of its time when
:attr:`ModelParams.hour_context_bands` is set. Each value is a row of the user-feature
vocabulary under the prefix ``ctx:``, so it is stored and restored with the features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from stream_rec.model.batch import InteractionBatch
from stream_rec.model.params import ModelParams
from stream_rec.model.tables import EntityTable

PREFIX = "ctx:"
"""Vocabulary prefix of context values (a profile feature never clashes with one)."""


def context_values(
    context: Mapping[str, str] | None, ts: float, hour_bands: int, slots: int
) -> tuple[str, ...]:
    """The context values of one event, at most ``slots`` of them.

    >>> context_values({"device": "tv", "country": "de"}, 1_700_000_000.0, 4, 4)
    ('country=de', 'device=tv', 'hour=18-23')
    >>> context_values(None, 1_700_000_000.0, 0, 4)
    ()
    """
    values = [f"{name}={context[name]}" for name in sorted(context)] if context else []
    if hour_bands:
        width = 24 // hour_bands  # a divisor of 24 (the setting allows no other)
        first = int(ts % 86_400.0 // 3_600.0) // width * width
        values.append(f"hour={first}-{first + width - 1}")
    return tuple(values[:slots])


def parse_context(pairs: Sequence[str]) -> dict[str, str]:
    """``["device=tv", "country=de"]`` (the command line's form) as a context mapping.

    >>> parse_context(["device=tv"])
    {'device': 'tv'}
    """
    context: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"a context value is name=value, not {pair!r}")
        context[name] = value
    return context


class ContextVocabulary:
    """Context values and their rows in the user-feature table, at most
    ``max_context_values`` of them (the vocabulary cap bounds memory)."""

    def __init__(self, params: ModelParams, features: EntityTable) -> None:
        self._params = params
        self._features = features
        self._rows: dict[str, int] = {}
        self._changed: dict[int, None] = {}
        self.dropped = 0
        """Context values ignored because the vocabulary was full (since start)."""

    def __len__(self) -> int:
        return len(self._rows)

    def rows_for(self, batch: InteractionBatch) -> npt.NDArray[np.int32] | None:
        """The batch's context rows (n, context_slots), -1 padded; a new value gets a row
        while the vocabulary has room. None when no event has a context value."""
        p = self._params
        if p.context_slots == 0 or (batch.contexts is None and not p.hour_context_bands):
            return None
        contexts = batch.contexts or [None] * len(batch)
        out = np.full((len(batch), p.context_slots), -1, np.int32)
        for e, (context, ts) in enumerate(zip(contexts, batch.timestamps.tolist(), strict=True)):
            slot = 0
            for value in context_values(context, ts, p.hour_context_bands, p.context_slots):
                row = self._rows.get(value)
                if row is None:
                    if len(self._rows) >= p.max_context_values:
                        self.dropped += 1
                        continue
                    row = int(self._features.rows_for([PREFIX + value])[0])
                    self._rows[value] = row
                out[e, slot] = row
                self._changed[row] = None
                slot += 1
        return out if (out >= 0).any() else None

    def lookup(
        self, contexts: Sequence[Mapping[str, str] | None], timestamps: Sequence[float]
    ) -> npt.NDArray[np.int32]:
        """(m, context_slots) rows of m (context, ts) pairs for scoring, -1 where there is
        no value or the model never learned it (nothing is added)."""
        p = self._params
        out = np.full((len(contexts), p.context_slots), -1, np.int32)
        for e, (context, ts) in enumerate(zip(contexts, timestamps, strict=True)):
            known = [
                row
                for value in context_values(context, ts, p.hour_context_bands, p.context_slots)
                if (row := self._rows.get(value)) is not None
            ]
            out[e, : len(known)] = known
        return out

    def take_changed(self) -> list[int]:
        """Rows stepped since the last call."""
        rows = list(self._changed)
        self._changed.clear()
        return rows

    def all_rows(self) -> list[int]:
        return list(self._rows.values())

    def restore(self) -> None:
        """Rebuild the vocabulary from the restored user-feature table."""
        self._rows = {
            token.removeprefix(PREFIX): row
            for row, token in enumerate(self._features.ids)
            if token.startswith(PREFIX)
        }
