"""The online quality tracker: lists fed in batches measure as if fed one at a time."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from stream_rec.stream.quality import OnlineQuality

_lists = st.lists(
    st.tuples(
        st.sampled_from([f"u{n}" for n in range(8)]),
        st.lists(st.sampled_from([f"i{n}" for n in range(30)]), max_size=5, unique=True).map(tuple),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(lists=_lists, cuts=st.lists(st.integers(0, 60), max_size=6))
def test_batches_of_lists_give_the_figures_and_samples_of_one_list_at_a_time(
    lists: list[tuple[str, tuple[str, ...]]], cuts: list[int]
) -> None:
    whole, single = (
        OnlineQuality(list_window=7, diversity_every=3),
        OnlineQuality(list_window=7, diversity_every=3),
    )
    bounds = [0, *sorted(min(c, len(lists)) for c in cuts), len(lists)]
    sampled_whole = []
    for start, stop in pairwise(bounds):
        sampled_whole += [start + p for p in whole.observe_lists(lists[start:stop])]
    sampled_single = [n for n, entry in enumerate(lists) if single.observe_lists([entry])]
    assert sampled_whole == sampled_single
    assert whole.figures(30) == single.figures(30)
    # Each user's last list is what the next positive is scored against.
    whole.observe_positives(["u1", "u2"], ["i1", "i2"])
    single.observe_positives(["u1", "u2"], ["i1", "i2"])
    assert whole.figures(30) == single.figures(30)
