"""The ``stream-rec`` command as users run it: separate processes, settings by environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from stream_rec.config import Settings
from stream_rec.evaluation.synthetic import SyntheticWorld
from tests.integration.support import open_store, produce_events, running_worker, wait_for

pytestmark = pytest.mark.integration


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_REC_")}
    env.update(
        {
            "STREAM_REC_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "STREAM_REC_KAFKA__SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
            "STREAM_REC_KAFKA__HEARTBEAT_INTERVAL_MS": str(settings.kafka.heartbeat_interval_ms),
            "STREAM_REC_REDIS__URL": settings.redis.url,
            "STREAM_REC_REDIS__KEY_PREFIX": settings.redis.key_prefix,
            "STREAM_REC_TOPICS__EVENTS": settings.topics.events,
            "STREAM_REC_TOPICS__PROFILES": settings.topics.profiles,
            "STREAM_REC_TOPICS__RECOMMENDATIONS": settings.topics.recommendations,
            "STREAM_REC_TOPICS__METRICS": settings.topics.metrics,
            "STREAM_REC_TOPICS__DEAD_LETTER": settings.topics.dead_letter,
            "STREAM_REC_WORKER__GROUP_ID": settings.worker.group_id,
            "STREAM_REC_METRICS__PORT": "0",
        }
    )
    return env


def _cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream_rec", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _ratings_csv(folder: Path) -> Path:
    folder.mkdir()
    rows = ["userId,movieId,rating,timestamp"]
    # Written out of time order on purpose: the replay sorts by timestamp.
    for n in range(300, 0, -1):
        rows.append(f"{n % 12},{(n * 7) % 40},{1 + n % 5}.0,{1_000_000 + n}")
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_replay_run_recommend_and_stats(settings: Settings, tmp_path: Path) -> None:
    env = _env(settings)
    data = _ratings_csv(tmp_path / "ml")
    replay = _cli("replay", "--data", str(data), "--format", "movielens-csv", env=env)
    assert replay.returncode == 0, replay.stderr
    assert "wrote 300 events" in replay.stdout

    worker = subprocess.Popen(
        [sys.executable, "consumers/trainer.py"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        with open_store(settings) as store:
            wait_for(lambda: store.stats().applied_events == 300, 90, "the replay applied")
    finally:
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, output
    assert "stopped cleanly" in output

    listing = _cli("recommend", "1", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "user 1" in listing.stdout
    assert " 1. " in listing.stdout
    as_json = orjson.loads(_cli("recommend", "1", "--json", env=env).stdout)
    assert as_json["user_id"] == "1"
    assert len(as_json["items"]) == 10

    stats = orjson.loads(_cli("stats", "--json", env=env).stdout)
    assert stats["applied_events"] == 300
    assert stats["item_events_sum"] == 300
    assert stats["users"] == 12
    assert stats["items"] == 40
    assert sum(stats["partition_offsets"].values()) == 300

    unknown = _cli("recommend", "nobody", env=env)
    assert unknown.returncode == 1
    assert "no list for user 'nobody'" in unknown.stderr


def test_replay_jsonl_keeps_bad_lines_for_the_dead_letter_topic(
    settings: Settings, tmp_path: Path
) -> None:
    lines = [
        orjson.dumps(
            {
                "event_id": f"e{n}",
                "type": "click",
                "user_id": "u1",
                "item_id": f"i{n}",
                "ts": 1.7e9 - n,
            }
        )
        for n in range(5)
    ]
    lines.insert(2, b"this is not json")
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    env = _env(settings)
    replay = _cli(
        "replay",
        "--data",
        str(tmp_path / "events.jsonl"),
        "--format",
        "jsonl",
        "--no-progress",
        env=env,
    )
    assert replay.returncode == 0, replay.stderr
    assert "wrote 6 events" in replay.stdout


def test_bad_setting_stops_startup_naming_the_variable(settings: Settings) -> None:
    env = _env(settings) | {"STREAM_REC_WORKER__BATCH_MAX_EVENTS": "lots"}
    started = time.monotonic()
    result = _cli("run", env=env)
    assert result.returncode == 2
    assert "STREAM_REC_WORKER__BATCH_MAX_EVENTS" in result.stderr
    assert time.monotonic() - started < 30
    typo = _cli("run", env=_env(settings) | {"STREAM_REC_KAFKA__BOOTSTRAP_SERVER": "x:1"})
    assert typo.returncode == 2
    assert "STREAM_REC_KAFKA__BOOTSTRAP_SERVER" in typo.stderr


def test_missing_dataset_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    result = _cli(
        "replay", "--data", str(tmp_path), "--format", "movielens-100k", env=_env(settings)
    )
    assert result.returncode == 2
    assert "no u.data in this folder" in result.stderr


def test_replay_writes_the_side_files_as_profiles_first(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text(
        "".join(f"{1 + n % 3}\t{10 + n % 4}\t4\t{1000 + n}\n" for n in range(20))
    )
    (folder / "u.user").write_text(
        "1|24|M|technician|85711\n2|53|F|other|94043\n3|33|F|writer|15213\n"
    )
    flags = "|".join(["0"] * 8 + ["1"] + ["0"] * 10)  # Drama
    (folder / "u.item").write_text(
        "".join(f"{10 + n}|Film {n} (1995)|01-Jan-1995||http://x|{flags}\n" for n in range(4))
    )
    replay = _cli(
        "replay",
        "--data",
        str(folder),
        "--format",
        "movielens-100k",
        "--no-progress",
        env=_env(settings),
    )
    assert replay.returncode == 0, replay.stderr
    assert "wrote 7 profiles" in replay.stdout and "wrote 20 events" in replay.stdout


def test_recommend_scores_for_a_given_context(settings: Settings) -> None:
    world = SyntheticWorld.create(n_users=100, n_items=150, seed=4, context_strength=0.9)
    events = list(world.events(12_000))
    produce_events(settings, events)
    with running_worker(settings), open_store(settings) as store:
        wait_for(lambda: store.stats().applied_events == len(events), 90, "the events applied")
    env = _env(settings)
    lists = {}
    for device in ("tv", "mobile"):
        result = _cli("recommend", "u1", "--context", f"device={device}", "--json", env=env)
        assert result.returncode == 0, result.stderr
        message = orjson.loads(result.stdout)
        assert message["context"] == {"device": device}
        lists[device] = [entry["item_id"] for entry in message["items"]]
    tv = world.device_item_ids("tv")
    on_tv = sum(i in tv for i in lists["tv"])
    on_mobile = sum(i in tv for i in lists["mobile"])
    print(f"tv-genre items in u1's top 10: {on_tv} for device=tv, {on_mobile} for device=mobile")
    assert on_tv > on_mobile
    text = _cli("recommend", "u1", "--context", "device=tv", env=env)
    assert "context device=tv" in text.stdout
    bad = _cli("recommend", "u1", "--context", "tv", env=env)
    assert bad.returncode == 2
    assert "name=value" in bad.stderr
