"""The online quality tracker: lists fed in batches measure as if fed one at a time."""

from __future__ import annotations

from collections.abc import Callable
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
def test_batches_of_lists_give_the_figures_of_one_list_at_a_time(
    lists: list[tuple[str, tuple[str, ...]]], cuts: list[int]
) -> None:
    def tracker() -> OnlineQuality:
        return OnlineQuality(list_window=7, diversity_every=3)

    def diversity(batch: list[tuple[str, tuple[str, ...]]]) -> Callable[[int], float | None]:
        # Any figure of the list itself; None (not measurable) for lists of under 2 items.
        return lambda p: (
            None if len(batch[p][1]) < 2 else len(batch[p][1]) / 10 + hash(batch[p][0]) % 7
        )

    whole, single = tracker(), tracker()
    bounds = [0, *sorted(min(c, len(lists)) for c in cuts), len(lists)]
    for start, stop in pairwise(bounds):
        whole.observe_lists(lists[start:stop], diversity(lists[start:stop]))
    for entry in lists:
        single.observe_lists([entry], diversity([entry]))
    assert whole.figures(30) == single.figures(30)
    # Coverage: the distinct items of the window's 7 newest lists, over the catalogue.
    window = [items for _, items in lists[-7:]]
    coverage = len({i for items in window for i in items}) / 30 if window else None
    assert whole.figures(30).coverage == coverage
    # Each user's last list is what the next positive is scored against.
    assert whole.observe_positives(["u1", "u2"], ["i1", "i2"]) == single.observe_positives(
        ["u1", "u2"], ["i1", "i2"]
    )
    assert whole.figures(30) == single.figures(30)


def test_only_the_diversities_the_window_keeps_are_measured() -> None:
    quality = OnlineQuality(list_window=20, diversity_every=2)  # keeps 10 figures
    lists = [(f"u{n}", ("a", "b")) for n in range(100)]
    measured: list[int] = []
    quality.observe_lists(lists, lambda p: measured.append(p) or 0.5)
    assert measured == list(range(99, 79, -2))  # the newest 10 of the 50 sampled
    assert quality.figures(2).diversity == 0.5
