"""The model: pure numpy/numba, no I/O. Factor tables, SGD kernels, session memory, top-k.

Nothing here imports Kafka, Redis, Prometheus or pydantic (an import-linter contract in
pyproject.toml enforces it): the worker, the evaluation and the benchmarks share it as is.
"""

from stream_rec.model.batch import CONSUMED_KINDS, KIND_NAMES, EventKind, InteractionBatch
from stream_rec.model.hybrid import SHARED_TABLES, TABLES, AppliedBatch, HybridModel
from stream_rec.model.params import ModelParams
from stream_rec.model.tables import EntityTable, ModelDelta, SideColumn, TableRows
from stream_rec.model.topk import SessionQuery, top_k

__all__ = [
    "CONSUMED_KINDS",
    "KIND_NAMES",
    "SHARED_TABLES",
    "TABLES",
    "AppliedBatch",
    "EntityTable",
    "EventKind",
    "HybridModel",
    "InteractionBatch",
    "ModelDelta",
    "ModelParams",
    "SessionQuery",
    "SideColumn",
    "TableRows",
    "top_k",
]
