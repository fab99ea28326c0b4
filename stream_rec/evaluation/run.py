"""`stream-rec evaluate`: every model on one dataset, test-then-learn, as JSON, table, plot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from stream_rec.evaluation.baselines import Popularity, RiverBiasedMF, stream_rec_variants
from stream_rec.evaluation.datasets import DatasetFormat
from stream_rec.evaluation.movielens import DatasetError, SideInfo, load_ratings, load_side_info
from stream_rec.evaluation.prequential import (
    EvaluatedModel,
    EvaluationProtocol,
    ModelReport,
    evaluate,
    query_positions,
)
from stream_rec.events import Rejection, WatchEvent, decode_event
from stream_rec.model import KIND_NAMES, EventKind, InteractionBatch, ModelParams

MODEL_NAMES = (
    "stream_rec",
    "stream_rec_mf_only",
    "stream_rec_session_only",
    "stream_rec_no_features",
    "stream_rec_no_demographics",
    "popularity",
    "river_biasedmf",
)


@dataclass
class EvaluationResult:
    dataset: str
    events: int
    protocol: EvaluationProtocol
    reports: dict[str, ModelReport] = field(default_factory=dict)
    skipped_lines: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "events": self.events,
            "protocol": {
                "every": self.protocol.every,
                "k": self.protocol.k,
                "positive_rating": self.protocol.positive_rating,
            },
            "models": {name: report.as_json() for name, report in self.reports.items()},
            "skipped_lines": self.skipped_lines,
        }


def load_stream(path: Path, fmt: DatasetFormat) -> tuple[InteractionBatch, SideInfo, int]:
    """Events in time order, the side info, and how many lines were not valid events."""
    if fmt == "jsonl":
        return _jsonl_stream(path)
    ratings = load_ratings(path, fmt)
    n = len(ratings)
    events = InteractionBatch(
        ratings.users.tolist(),
        ratings.items.tolist(),
        np.full(n, EventKind.RATING, np.int8),
        ratings.ratings.astype(np.float32),
        np.full(n, np.nan, np.float32),
        ratings.timestamps,
    )
    return events, load_side_info(path, fmt), 0


def _jsonl_stream(path: Path) -> tuple[InteractionBatch, SideInfo, int]:
    if not path.is_file():
        raise DatasetError(f"{path}: jsonl needs a .jsonl file")
    rows: list[tuple[float, str, str, int, float, float]] = []
    skipped = 0
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            event = decode_event(line.rstrip(b"\r\n"), 1 << 20)
            if isinstance(event, Rejection):
                skipped += 1
                continue
            value, duration = 0.0, float("nan")
            if isinstance(event, WatchEvent):
                value = event.watch_seconds
                duration = event.duration_seconds or float("nan")
            elif event.type == "rating":
                value = event.rating
            rows.append(
                (event.ts, event.user_id, event.item_id, KIND_NAMES[event.type], value, duration)
            )
    rows.sort(key=lambda r: r[0])  # stable: ties keep file order
    events = InteractionBatch.from_columns(
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [r[4] for r in rows],
        [r[5] for r in rows],
        [r[0] for r in rows],
    )
    return events, SideInfo(), skipped


def build_models(names: Sequence[str], params: ModelParams, side: SideInfo) -> list[EvaluatedModel]:
    """The named models, in the order given."""
    variants = {
        m.name: m
        for m in stream_rec_variants(
            params, side.user_features, side.item_features, side.timed_item_features
        )
    }
    models: list[EvaluatedModel] = []
    for name in names:
        if name in variants:
            models.append(variants[name])
        elif name == "popularity":
            models.append(Popularity(params.positive_rating))
        elif name == "river_biasedmf":
            models.append(RiverBiasedMF())
        else:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
    return models


def run_evaluation(
    path: Path,
    fmt: DatasetFormat,
    protocol: EvaluationProtocol,
    params: ModelParams,
    names: Sequence[str] = MODEL_NAMES,
    limit: int | None = None,
    log: Callable[[str], None] | None = None,
) -> EvaluationResult:
    """Load the dataset and evaluate every named model on the same stream and queries."""
    events, side, skipped = load_stream(path, fmt)
    if limit is not None:
        events = events.slice(0, limit)
    queries = query_positions(events, protocol)
    result = EvaluationResult(f"{path.name} ({fmt})", len(events), protocol, skipped_lines=skipped)
    if log:
        log(f"{result.dataset}: {len(events)} events, {len(queries)} ranking queries")
    for model in build_models(names, params, side):
        started = time.perf_counter()
        result.reports[model.name] = evaluate(model, events, protocol, side.item_genres, queries)
        if log:
            log(f"  {model.name}: done in {time.perf_counter() - started:.1f} s")
    return result


def format_table(result: EvaluationResult) -> str:
    """The figures as a fixed-width table, one model a row."""
    columns = (
        "mae",
        "rmse",
        "recall@10",
        "ndcg@10",
        "coverage@10",
        "diversity@10",
        "novelty@10",
        "cold_recall@10",
        "events_per_s",
    )
    header = f"{'model':<26}" + "".join(f"{c:>15}" for c in columns)
    lines = [header, "-" * len(header)]
    for name, report in result.reports.items():
        figures = report.as_json()
        cells = []
        for column in columns:
            value = figures[column]
            if value is None:
                cells.append(f"{'-':>15}")
            elif column == "events_per_s":
                cells.append(f"{value:>15,.0f}")
            else:
                cells.append(f"{value:>15.4f}")
        lines.append(f"{name:<26}" + "".join(cells))
    return "\n".join(lines)


def write_json(result: EvaluationResult, out: Path) -> None:
    out.write_text(json.dumps(result.as_json(), indent=2) + "\n")


def plot(result: EvaluationResult, out: Path) -> None:
    """recall@10 and RMSE so far along the stream, one line per model."""
    fig = Figure(figsize=(9, 7))  # the object API: no pyplot, no global backend state
    top, bottom = fig.subplots(2, 1, sharex=True)
    for index, (name, report) in enumerate(result.reports.items()):
        colour = f"C{index}"  # one colour per model in both panels
        top.plot(report.curve_events, report.curve_recall, label=name, color=colour)
        if report.rmse is not None:
            rmse = [np.nan if v is None else v for v in report.curve_rmse]
            bottom.plot(report.curve_events, rmse, label=name, color=colour)
    top.set_ylabel("recall@10 so far")
    top.set_title(f"prequential evaluation: {result.dataset}")
    top.legend(fontsize=8)
    bottom.set_ylabel("RMSE so far")
    bottom.set_xlabel("events")
    bottom.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
