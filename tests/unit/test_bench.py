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
    # and in batches as small as at 10k events/s offered, on a model warmed on the first half
    small = figures["small_batches"]
    assert small["events"] == 25_000
    assert (small["batch_events"], small["commit_every_batches"]) == (500, 20)
    assert set(small["stage_us_per_event"]) == set(STAGES)
    assert all(small["stage_us_per_event"][s] > 0 for s in ("decode", "model", "lists", "commit"))
    assert small["events_per_s"] > 0
    # what each commit carried: the items the batches stepped, each a whole record
    per_commit = small["per_commit"]
    assert 0 < per_commit["items_rows"] <= 10_000
    assert per_commit["items_bytes"] > 1_000 * per_commit["items_rows"]  # neighbours included
