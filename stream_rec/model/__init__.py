"""The model: pure numpy/numba, no I/O. Factor tables, SGD kernels, top-k.

Nothing here imports Kafka, Redis, Prometheus or pydantic (an import-linter contract in
pyproject.toml enforces it): the worker, the evaluation and the benchmarks share it as is.
"""

from stream_rec.model.batch import CONSUMED_KINDS, KIND_NAMES, EventKind, InteractionBatch
from stream_rec.model.mf import AppliedBatch, StreamingMF
from stream_rec.model.params import ModelParams
from stream_rec.model.tables import EntityRows, EntityTable
from stream_rec.model.topk import top_k

__all__ = [
    "CONSUMED_KINDS",
    "KIND_NAMES",
    "AppliedBatch",
    "EntityRows",
    "EntityTable",
    "EventKind",
    "InteractionBatch",
    "ModelParams",
    "StreamingMF",
    "top_k",
]
