"""Counter-based random numbers for the kernels: reproducible regardless of batching.

A vector's initial values depend only on (seed, the entity's id), and the negatives drawn
for an event only on (seed, the user's id, how many events of that user came before). A
replay cut into other batches, or resumed after a crash, therefore draws the same numbers.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import numpy.typing as npt

from stream_rec.model._jit import compiled

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_53 = 1.0 / 9007199254740992.0


def stable_key(entity_id: str) -> int:
    """A 64-bit key of ``entity_id`` that is the same in every process and run.

    >>> stable_key("user-1") == stable_key("user-1")
    True
    >>> stable_key("user-1") != stable_key("user-2")
    True
    """
    return int.from_bytes(hashlib.blake2b(entity_id.encode(), digest_size=8).digest(), "little")


@compiled
def mix64(z: np.uint64) -> np.uint64:
    """The splitmix64 finaliser: a bijection of uint64 that scrambles every bit."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@compiled
def next_state(state: np.uint64) -> np.uint64:
    """Advance a splitmix64 counter by one step."""
    return state + _GOLDEN


@compiled
def uniform01(state: np.uint64) -> float:
    """A float in [0, 1) from the state's scrambled bits (53 bits of precision)."""
    return float(mix64(state) >> np.uint64(11)) * _TWO_POW_53


@compiled
def init_rows(
    rows: npt.NDArray[np.float32],
    start: int,
    stop: int,
    keys: npt.NDArray[np.uint64],
    k: int,
    std: float,
    seed: int,
) -> None:
    """Fill ``rows[start:stop, :k]`` with N(0, std) and the remaining columns with 0.

    Row r's values depend only on (seed, keys[r]) - Box-Muller over a counter stream.
    """
    for r in range(start, stop):
        state = mix64(keys[r] ^ mix64(np.uint64(seed) + _GOLDEN))
        for f in range(0, k, 2):
            state = next_state(state)
            u1 = uniform01(state)
            state = next_state(state)
            u2 = uniform01(state)
            radius = math.sqrt(-2.0 * math.log(1.0 - u1)) * std
            rows[r, f] = radius * math.cos(2.0 * math.pi * u2)
            if f + 1 < k:
                rows[r, f + 1] = radius * math.sin(2.0 * math.pi * u2)
        for f in range(k, rows.shape[1]):
            rows[r, f] = 0.0
