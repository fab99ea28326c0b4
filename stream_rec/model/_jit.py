"""A typed front for numba's ``njit``, so that mypy --strict sees real signatures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])

# Reassociation lets LLVM vectorise dot products. Not 'nnan'/'ninf': the kernels use NaN
# (an unknown duration) and -inf (an excluded item) as values, and those flags would let
# the compiler assume them away.
_FASTMATH = frozenset({"reassoc", "contract", "nsz", "arcp"})


def inlined(fn: F) -> F:
    """Like :func:`compiled`, and inlined into its callers by numba itself: for the small
    helpers of a hot per-event loop, where a call per event would cost more than the work."""
    return cast(
        F,
        numba.njit(
            cache=True, nogil=True, fastmath=set(_FASTMATH), error_model="numpy", inline="always"
        )(fn),
    )


def compiled(fn: F) -> F:
    """Compile ``fn`` in nopython mode, cached on disk, releasing the GIL.

    ``error_model="numpy"``: float division by zero gives inf/NaN instead of raising, as in
    numpy. Results are deterministic for the same inputs on the same machine.
    """
    return cast(
        F, numba.njit(cache=True, nogil=True, fastmath=set(_FASTMATH), error_model="numpy")(fn)
    )
