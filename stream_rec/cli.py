"""The ``stream-rec`` command.

Exit codes: 0 success, 1 a failure while running (the message says what), 2 bad
settings or arguments (the message names the setting or file).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from stream_rec.config import Settings, SettingsError, load_settings, settings_markdown
from stream_rec.model.context import parse_context
from stream_rec.store import RedisStore

log = logging.getLogger("stream_rec")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except SettingsError as exc:
        print(f"stream-rec: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-rec",
        description="A real-time recommender: Kafka events in, fresh top-k lists out. "
        "Settings come from STREAM_REC_* environment variables (see the README).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run a trainer worker against the configured Kafka and Redis")
    run.set_defaults(handler=_cmd_run)

    serve = sub.add_parser(
        "serve", help="serve the HTTP API and the live page (lists, events, health, metrics)"
    )
    serve.set_defaults(handler=_cmd_serve)

    demo = sub.add_parser(
        "demo", help="start local Kafka and Redis, a worker and a synthetic stream"
    )
    demo.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="stream this long, then stop (default: until Ctrl-C)",
    )
    demo.add_argument("--rate", type=float, default=300.0, help="events per second (default 300)")
    demo.add_argument("--users", type=int, default=300)
    demo.add_argument("--items", type=int, default=400)
    demo.add_argument("--show", type=int, default=3, help="users whose lists are printed")
    demo.add_argument(
        "--broker",
        choices=["auto", "apache", "tansu"],
        default="auto",
        help="auto: Apache Kafka where Java and Maven exist, else Tansu",
    )
    demo.add_argument(
        "--http-port",
        type=int,
        default=None,
        metavar="PORT",
        help="also serve the API and the live page on 127.0.0.1:PORT (0: a free port)",
    )
    demo.set_defaults(handler=_cmd_demo)

    replay = sub.add_parser("replay", help="write a dataset into the events topic in time order")
    replay.add_argument("--data", type=Path, required=True, help="dataset folder or file")
    replay.add_argument(
        "--format",
        required=True,
        dest="fmt",
        choices=["movielens-csv", "movielens-100k", "movielens-1m", "jsonl"],
    )
    replay.add_argument("--limit", type=int, default=None, help="only the first N events")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay.add_argument(
        "--no-profiles",
        action="store_true",
        help="leave out the side files (demographics, genres) from the profiles topic",
    )
    replay.set_defaults(handler=_cmd_replay)

    evaluate = sub.add_parser(
        "evaluate", help="prequential evaluation of stream-rec and baselines on a dataset"
    )
    evaluate.add_argument("--data", type=Path, required=True, help="dataset folder or .jsonl file")
    evaluate.add_argument(
        "--format",
        required=True,
        dest="fmt",
        choices=["movielens-csv", "movielens-100k", "movielens-1m", "jsonl"],
    )
    evaluate.add_argument(
        "--every", type=int, default=10, help="rank at every S-th novel positive (default 10)"
    )
    evaluate.add_argument(
        "--json", type=Path, default=None, dest="json_out", help="write the figures"
    )
    evaluate.add_argument(
        "--plot", type=Path, default=None, help="write recall/RMSE over the stream (PNG)"
    )
    evaluate.add_argument(
        "--models", default=None, help="comma-separated subset (default: all of them)"
    )
    evaluate.add_argument("--limit", type=int, default=None, help="only the first N events")
    evaluate.set_defaults(handler=_cmd_evaluate)

    bench = sub.add_parser("bench", help="measure speed side by side (JSON)")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, same keys")
    bench.add_argument("--json", type=Path, default=None, dest="json_out", help="write the figures")
    bench.set_defaults(handler=_cmd_bench)

    recommend = sub.add_parser("recommend", help="print a user's current list from Redis")
    recommend.add_argument("user_id")
    recommend.add_argument("--json", action="store_true", help="print the stored message as JSON")
    recommend.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="score now for this context (repeatable), from the model state in Redis",
    )
    recommend.set_defaults(handler=_cmd_recommend)

    stats = sub.add_parser("stats", help="print counters and offsets read from Redis")
    stats.add_argument("--json", action="store_true", help="one JSON object")
    stats.set_defaults(handler=_cmd_stats)

    show = sub.add_parser("settings", help="print the effective settings (secrets masked)")
    show.add_argument("--markdown", action="store_true", help="the table of every setting instead")
    show.set_defaults(handler=_cmd_settings)
    return parser


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.log_level != "DEBUG":
        logging.getLogger("kafka").setLevel(logging.WARNING)


def _cmd_run(_args: argparse.Namespace) -> int:
    from stream_rec.stream.retry import Stopped
    from stream_rec.stream.worker import TrainerWorker

    settings = load_settings()
    _configure_logging(settings)
    worker = TrainerWorker(settings)

    def request_stop(signum: int, _frame: object) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        worker.stop_event.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        worker.start()
        worker.run()
    except Stopped as exc:
        log.info("stopped while waiting for a service (%s); nothing uncommitted is lost", exc)
    except Exception:
        log.exception("the worker failed; nothing of the failed batch was committed")
        return 1
    finally:
        worker.close()
    log.info("stopped cleanly")
    return 0


def _cmd_serve(_args: argparse.Namespace) -> int:
    from stream_rec.api.server import serve
    from stream_rec.stream.retry import Stopped

    settings = load_settings()
    _configure_logging(settings)

    def stopping(signum: int, _frame: object) -> None:
        log.info("signal %d: the API server has stopped", signum)

    # uvicorn handles SIGINT/SIGTERM while it serves and raises them again once stopped:
    # these handlers make that a clean exit (0) rather than death by signal.
    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    try:
        serve(settings)
    except Stopped as exc:
        log.info("stopped while waiting for a service (%s)", exc)
    except OSError as exc:
        print(f"stream-rec serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from stream_rec.demo import DemoOptions, run_demo
    from stream_rec.services import ServiceError

    settings = load_settings()
    _configure_logging(settings.model_copy(update={"log_level": "WARNING"}))
    options = DemoOptions(
        seconds=args.seconds,
        rate=args.rate,
        users=args.users,
        items=args.items,
        show=args.show,
        broker=args.broker,
        http_port=args.http_port,
    )
    try:
        return run_demo(options, out=lambda line: print(line, flush=True))
    except ServiceError as exc:
        print(f"stream-rec demo: {exc}", file=sys.stderr)
        return 1


def _cmd_replay(args: argparse.Namespace) -> int:
    from itertools import islice

    from tqdm import tqdm

    from stream_rec.evaluation.datasets import load_messages, load_profile_messages
    from stream_rec.evaluation.movielens import DatasetError
    from stream_rec.stream.kafka_io import ensure_topics, make_admin, make_producer
    from stream_rec.stream.replay import produce_all

    settings = load_settings()
    _configure_logging(settings)
    try:
        messages = list(islice(load_messages(args.data, args.fmt), args.limit))
        profiles = [] if args.no_profiles else load_profile_messages(args.data, args.fmt)
    except (DatasetError, OSError) as exc:
        print(f"stream-rec replay: {exc}", file=sys.stderr)
        return 2
    admin = make_admin(settings.kafka)
    try:
        ensure_topics(admin, settings.topics)
    finally:
        admin.close()
    producer = make_producer(settings.kafka, settings.topics)
    try:
        # Profiles first: a worker then knows the users' and items' features from their
        # first events on.
        written = produce_all(producer, settings.topics.profiles, profiles)
        with tqdm(total=len(messages), unit="ev", disable=args.no_progress, file=sys.stderr) as bar:
            sent = produce_all(producer, settings.topics.events, messages, progress=bar)
    finally:
        producer.close()
    if written:
        print(f"wrote {written} profiles to {settings.topics.profiles}")
    print(f"wrote {sent} events to {settings.topics.events}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from stream_rec.evaluation.movielens import DatasetError
    from stream_rec.evaluation.prequential import EvaluationProtocol
    from stream_rec.evaluation.run import (
        MODEL_NAMES,
        format_table,
        plot,
        run_evaluation,
        write_json,
    )

    settings = load_settings()
    _configure_logging(settings)
    names = MODEL_NAMES if args.models is None else tuple(args.models.split(","))
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        choices = ", ".join(MODEL_NAMES)
        print(
            f"stream-rec evaluate: unknown model {unknown[0]!r}; choose from {choices}",
            file=sys.stderr,
        )
        return 2
    if args.every < 1:
        print("stream-rec evaluate: --every must be at least 1", file=sys.stderr)
        return 2
    protocol = EvaluationProtocol(every=args.every, positive_rating=settings.model.positive_rating)
    try:
        result = run_evaluation(
            args.data,
            args.fmt,
            protocol,
            settings.model,
            names,
            args.limit,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except (DatasetError, OSError) as exc:
        print(f"stream-rec evaluate: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json_out is not None:
        write_json(result, args.json_out)
        print(f"wrote {args.json_out}")
    if args.plot is not None:
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from stream_rec.bench import run_bench

    result = run_bench(args.quick, log=lambda line: print(line, file=sys.stderr, flush=True))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json_out is not None:
        args.json_out.write_text(text + "\n")
    return 0


def _open_store(settings: Settings) -> RedisStore:
    store = RedisStore.from_settings(settings.redis)
    store.start()
    return store


def _cmd_recommend(args: argparse.Namespace) -> int:
    settings = load_settings()
    _configure_logging(settings)
    try:
        context = parse_context(args.context)
    except ValueError as exc:
        print(f"stream-rec: --context: {exc}", file=sys.stderr)
        return 2
    store = _open_store(settings)
    try:
        raw = (
            _scored_for(store, settings, args.user_id, context)
            if context
            else store.recommendation(args.user_id)
        )
    finally:
        store.close()
    if raw is None:
        print(
            f"no list for user {args.user_id!r} (unknown user, or no events applied yet)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(raw.decode())
        return 0
    message = orjson.loads(raw)
    print(f"user {message['user_id']}  version {message['version']}  model {message['model']}")
    if message.get("context"):
        print("context " + " ".join(f"{k}={v}" for k, v in message["context"].items()))
    for rank, entry in enumerate(message["items"], start=1):
        print(f"{rank:3d}. {entry['item_id']:<24} {entry['score']:.4f}")
    return 0


def _scored_for(
    store: RedisStore, settings: Settings, user_id: str, context: dict[str, str]
) -> bytes | None:
    """The user's list scored now for ``context``, from the model state in Redis."""
    from stream_rec.model import HybridModel
    from stream_rec.stream.lists import list_for_context

    model = HybridModel(settings.model)
    snapshot = store.load(model.layout)
    model.restore(snapshot.model, snapshot.seen, snapshot.registry)
    return list_for_context(model, user_id, context, settings.worker.model_name)


def _cmd_stats(args: argparse.Namespace) -> int:
    settings = load_settings()
    _configure_logging(settings)
    store = _open_store(settings)
    try:
        stats = store.stats()
    finally:
        store.close()
    payload = {
        "applied_events": stats.applied_events,
        "item_events_sum": stats.item_events_sum,
        "partition_offsets": stats.partition_offsets,
        "users": stats.users,
        "items": stats.items,
    }
    if args.json:
        print(orjson.dumps(payload).decode())
    else:
        for key, value in payload.items():
            print(f"{key:>18}: {value}")
    return 0


def _cmd_settings(args: argparse.Namespace) -> int:
    if args.markdown:
        print(settings_markdown())
        return 0
    settings = load_settings()
    print(settings.model_dump_json(indent=2))
    return 0
