"""`stream-rec bench`'s in-memory processor section: the keys its JSON promises."""

from __future__ import annotations

from stream_rec.bench import bench_processor
from stream_rec.metrics import STAGES


def test_the_processor_section_times_every_batch_and_names_its_stages() -> None:
    figures = bench_processor(quick=True, _log=print)
    assert figures["events"] == 48_000  # after the untimed first 2,000
    assert figures["events_per_s"] > 0
    assert set(figures["stage_seconds"]) == set(STAGES)
    # the stages that do the work were timed; poll and flush have nothing to wait for here
    assert all(figures["stage_seconds"][s] > 0 for s in ("decode", "model", "lists", "commit"))
