"""Dataset loaders: MovieLens formats in time order, stable; jsonl passed through."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_rec.evaluation.datasets import load_messages
from stream_rec.evaluation.locate import dataset_path
from stream_rec.evaluation.movielens import DatasetError, load_ratings
from stream_rec.events import RatingEvent, decode_event

ML_SMALL = dataset_path("ml-latest-small")


def test_movielens_100k_and_1m_formats(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t4\t300\n2\t20\t3\t100\n1\t30\t5\t100\n")
    ratings = load_ratings(tmp_path, "movielens-100k")
    # Sorted by time; the two at t=100 keep their file order.
    assert ratings.items.tolist() == ["20", "30", "10"]
    (tmp_path / "ratings.dat").write_text("7::70::2::50\n8::80::1::40\n")
    assert load_ratings(tmp_path, "movielens-1m").users.tolist() == ["8", "7"]


def test_events_are_valid_wire_events(tmp_path: Path) -> None:
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n3,5,4.5,1000\n")
    (message,) = list(load_messages(tmp_path, "movielens-csv"))
    event = decode_event(message.value, 4096)
    assert isinstance(event, RatingEvent)
    assert (event.user_id, event.item_id, event.rating, event.ts) == ("3", "5", 4.5, 1000.0)
    assert message.key == b"3"


def test_bad_files_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no ratings\.csv"):
        load_ratings(tmp_path, "movielens-csv")
    (tmp_path / "ratings.csv").write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError, match="header"):
        load_ratings(tmp_path, "movielens-csv")
    (tmp_path / "u.data").write_text("1\t2\tfive\t3\n")
    with pytest.raises(DatasetError, match="not a movielens-100k"):
        load_ratings(tmp_path, "movielens-100k")


def test_jsonl_keeps_every_line_and_sorts_by_ts(tmp_path: Path) -> None:
    file = tmp_path / "e.jsonl"
    file.write_bytes(b'{"user_id":"a","ts":5}\nnot json\n{"user_id":"b","ts":1}\n\n')
    messages = list(load_messages(file, "jsonl"))
    assert [m.value for m in messages] == [
        b'{"user_id":"b","ts":1}',
        b'{"user_id":"a","ts":5}',
        b"not json",
    ]
    assert [m.key for m in messages] == [b"b", b"a", None]


@pytest.mark.skipif(
    ML_SMALL is None, reason="ml-latest-small is not on this machine (STREAM_REC_DATA_DIR)"
)
def test_movielens_latest_small_loads_in_time_order() -> None:
    assert ML_SMALL is not None
    ratings = load_ratings(ML_SMALL, "movielens-csv")
    assert len(ratings) == 100_836
    assert (ratings.timestamps[1:] >= ratings.timestamps[:-1]).all()
    first = next(load_messages(ML_SMALL, "movielens-csv"))
    assert orjson.loads(first.value)["type"] == "rating"
