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


@pytest.mark.parametrize(
    ("n_items", "scratch", "user_block"),
    [(50, 4_000_000, 256), (10_000, 1_000_000, 256), (1_000, 5_000, 256), (1_000, 700, 16)],
)
def test_matches_brute_force_with_exclusions(
    n_items: int, scratch: int, user_block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5_000 floats: tiles of 64 users x 78 items; 700 and 16: 4 blocks of users x 43 items
    monkeypatch.setattr(topk, "SCRATCH_FLOATS", scratch)
    monkeypatch.setattr(topk, "USER_BLOCK", user_block)
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


def test_the_session_blend_is_the_sum_of_both_z_scores() -> None:
    """score = f + w (std_f / std_s) s ranks exactly like z(f) + w z(s)."""
    rng = np.random.default_rng(3)
    n = 300
    users = rng.normal(size=(2, 4)).astype(np.float32)
    items = rng.normal(size=(n, 4)).astype(np.float32)
    bias = np.zeros(n, np.float32)
    neighbours = np.full((n, 6), -1, np.int32)
    weights = np.zeros((n, 6), np.float32)
    neighbours[7, :3] = [10, 20, 30]
    weights[7, :3] = [3.0, 2.0, 1.0]
    recent = np.full((2, 2), -1, np.int32)
    recent[0, 0] = 7  # user 0 has a session; user 1 has none
    session = topk.SessionQuery(recent, neighbours, weights, np.ones(n, np.float32), 0.8, 0.5)
    scores = topk.blended_scores(users, items, bias, session)
    factor = users @ items.T
    sparse = np.zeros(n)
    sparse[[10, 20, 30]] = [3.0, 2.0, 1.0]
    z = (factor[0] - factor[0].mean()) / factor[0].std() + 0.5 * (
        sparse - sparse.mean()
    ) / sparse.std()
    assert np.argsort(-scores[0]).tolist()[:20] == np.argsort(-z).tolist()[:20]
    np.testing.assert_allclose(scores[1], factor[1], rtol=1e-6)  # no session: factors alone


def test_with_a_session_the_list_follows_the_blended_scores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a session, tiles span the catalogue (the blend needs whole rows): the lists
    are the best of :func:`blended_scores`, also when the users come in several blocks."""
    monkeypatch.setattr(topk, "SCRATCH_FLOATS", 900)  # blocks of 3 users over 300 items
    rng = np.random.default_rng(5)
    n, m = 300, 8
    users = rng.normal(size=(m, 4)).astype(np.float32)
    items = rng.normal(size=(n, 4)).astype(np.float32)
    bias = rng.normal(size=n).astype(np.float32)
    neighbours = rng.integers(0, n, size=(n, 6)).astype(np.int32)
    weights = rng.random(size=(n, 6)).astype(np.float32)
    recent = rng.integers(0, n, size=(m, 3)).astype(np.int32)
    session = topk.SessionQuery(recent, neighbours, weights, np.ones(n, np.float32), 0.8, 0.5)
    excluded = [sorted(set(rng.integers(0, n, 10).tolist())) for _ in range(m)]
    rows, scores = top_k(users, items, bias, *_csr(excluded), k=10, session=session)
    full = topk.blended_scores(users, items, bias, session)
    for r in range(m):
        order = [int(i) for i in np.argsort(-full[r], kind="stable") if i not in excluded[r]]
        assert rows[r].tolist() == order[:10]
    np.testing.assert_allclose(scores, np.take_along_axis(full, rows, axis=1), rtol=1e-5)


def test_lanes_give_the_lists_and_scores_of_one_lane_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Blocks of users run in parallel lanes, each on one BLAS thread: the same bits as
    one lane."""
    rng = np.random.default_rng(9)
    # 1,100 users: 5 blocks of 256 in one lane, 6 of 184 in two or three.
    users = rng.normal(size=(1_100, 64)).astype(np.float32)
    items = rng.normal(size=(5_000, 64)).astype(np.float32)
    bias = rng.normal(size=5_000).astype(np.float32)
    excluded = [sorted(set(rng.integers(0, 5_000, 20).tolist())) for _ in range(1_100)]
    results = []
    for lanes in (1, 2, 3):
        monkeypatch.setattr(topk, "_LANES", lanes)
        results.append(top_k(users, items, bias, *_csr(excluded), k=10))
    for rows, scores in results[1:]:
        assert np.array_equal(rows, results[0][0])
        assert np.array_equal(scores, results[0][1])


@pytest.mark.parametrize("lanes", [1, 2, 4])
@pytest.mark.parametrize("m", [1, 15, 40, 200, 440, 1_000, 5_000])
def test_blocks_split_the_users_evenly_among_the_lanes(
    monkeypatch: pytest.MonkeyPatch, lanes: int, m: int
) -> None:
    monkeypatch.setattr(topk, "_LANES", lanes)
    block = topk._balanced(m, 256)
    count = -(-m // block)
    assert block <= 256
    used = min(lanes, m // topk.LANE_MIN_USERS)
    if used > 1:
        assert count % used == 0  # every lane gets as many blocks
        assert count * block - m < count  # and the blocks are as even as can be
    else:
        assert block == 256
