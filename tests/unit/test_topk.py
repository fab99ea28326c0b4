"""Top-k against a brute-force reference, with exclusions, ties and short catalogues."""

from __future__ import annotations

import numpy as np
import pytest

from stream_rec.model import topk
from stream_rec.model.topk import top_k


def _csr(lists: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.zeros(len(lists) + 1, np.int64)
    np.cumsum([len(x) for x in lists], out=indptr[1:])
    return indptr, np.array([i for x in lists for i in x], np.int64)


def _reference(
    users: np.ndarray, items: np.ndarray, bias: np.ndarray, excluded: list[list[int]], k: int
) -> list[list[int]]:
    scores = users @ items.T + bias
    out = []
    for r, row in enumerate(scores):
        order = [int(i) for i in np.argsort(-row, kind="stable") if int(i) not in set(excluded[r])]
        out.append(order[:k])
    return out


@pytest.mark.parametrize(("n_items", "block"), [(50, 4096), (10_000, 4096), (1_000, 128)])
def test_matches_brute_force_with_exclusions(
    n_items: int, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(topk, "ITEM_BLOCK", block)
    rng = np.random.default_rng(n_items)
    users = rng.normal(size=(64, 16)).astype(np.float32)
    items = rng.normal(size=(n_items, 16)).astype(np.float32)
    bias = rng.normal(size=n_items).astype(np.float32)
    excluded = [sorted(set(rng.integers(0, n_items, 30).tolist())) for _ in range(64)]
    rows, scores = top_k(users, items, bias, *_csr(excluded), k=10)
    assert rows.tolist() == _reference(users, items, bias, excluded, 10)
    full = users @ items.T + bias
    np.testing.assert_allclose(scores, np.take_along_axis(full, rows, axis=1), rtol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_fewer_items_than_k_leaves_a_marked_tail() -> None:
    users = np.ones((1, 2), np.float32)
    items = np.array([[1, 0], [0, 1], [2, 2]], np.float32)
    rows, scores = top_k(users, items, np.zeros(3, np.float32), *_csr([[2]]), k=4)
    assert rows.tolist() == [[0, 1, -1, -1]]
    assert np.isneginf(scores[0, 2:]).all()


def test_ties_prefer_the_lower_item_index() -> None:
    users = np.ones((1, 1), np.float32)
    items = np.ones((5, 1), np.float32)
    rows, _ = top_k(users, items, np.zeros(5, np.float32), *_csr([[]]), k=3)
    assert rows.tolist() == [[0, 1, 2]]


def test_strided_item_views_work_like_copies() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(500, 10)).astype(np.float32)
    users = rng.normal(size=(8, 8)).astype(np.float32)
    view_rows, _ = top_k(users, table[:, :8], table[:, 9], *_csr([[]] * 8), k=5)
    copy_rows, _ = top_k(users, table[:, :8].copy(), table[:, 9].copy(), *_csr([[]] * 8), k=5)
    assert view_rows.tolist() == copy_rows.tolist()
