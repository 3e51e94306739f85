"""Batch effects removed from the searched rows (cvae.neighbors.correction): Harmony's soft
clustering and per-cluster ridge correction."""

import numpy as np
import pytest

from cvae.neighbors.correction import batch_corrected


def _shifted_clusters(seed=0, n_per=60):
    """Three kinds of row in two batches; batch 1 is batch 0 moved by a fixed offset, and
    holds the kinds in other proportions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(3, 8))
    kinds = np.concatenate([np.repeat([0, 1, 2], [n_per, n_per, n_per]),
                            np.repeat([0, 1, 2], [2 * n_per, n_per // 2, n_per])])
    batches = np.repeat([0, 1], [3 * n_per, len(kinds) - 3 * n_per])
    offset = np.full(8, 4.0)
    X = centres[kinds] + rng.normal(size=(len(kinds), 8)) + offset * batches[:, None]
    return X, kinds, batches, offset


def _kind_means(X, kinds, batches, batch):
    return np.stack([X[(kinds == k) & (batches == batch)].mean(axis=0) for k in range(3)])


def test_the_batches_offset_is_removed_and_the_kinds_kept():
    X, kinds, batches, offset = _shifted_clusters()
    corrected = batch_corrected(X, batches)
    assert corrected.dtype == np.float32 and corrected.shape == X.shape
    before = np.linalg.norm(_kind_means(X, kinds, batches, 1) - _kind_means(X, kinds, batches, 0), axis=1)
    after = np.linalg.norm(_kind_means(corrected, kinds, batches, 1) - _kind_means(corrected, kinds, batches, 0),
                           axis=1)
    np.testing.assert_allclose(before, np.linalg.norm(offset), rtol=0.2)
    assert (after < 0.25 * before).all()  # each kind's two batches now lie together
    # ... and the kinds stay apart: every row's nearest centre across batches is its own kind's
    centres = _kind_means(corrected, kinds, batches, 0)
    nearest = np.linalg.norm(corrected[:, None] - centres[None], axis=2).argmin(axis=1)
    assert (nearest == kinds).mean() > 0.98


def test_rows_beyond_the_fitted_ones_are_corrected_by_the_fitted_clusters():
    X, kinds, batches, _ = _shifted_clusters()
    corrected = batch_corrected(X, batches, fitted_rows=150)  # 150 of 405 rows fitted
    before = np.linalg.norm(_kind_means(X, kinds, batches, 1) - _kind_means(X, kinds, batches, 0), axis=1)
    after = np.linalg.norm(_kind_means(corrected, kinds, batches, 1) - _kind_means(corrected, kinds, batches, 0),
                           axis=1)
    assert (after < 0.25 * before).all()
    fitted = np.linspace(0, len(X) - 1, 150).round().astype(int)
    np.testing.assert_allclose(batch_corrected(X[fitted], batches[fitted]), corrected[fitted], rtol=1e-6)


def test_one_group_or_an_infinite_ridge_leaves_the_rows_as_they_are():
    X, _, batches, _ = _shifted_clusters()
    np.testing.assert_array_equal(batch_corrected(X, np.zeros(len(X))), X.astype(np.float32))
    np.testing.assert_allclose(batch_corrected(X, batches, ridge=1e12), X, atol=1e-4)


def test_the_correction_is_deterministic_and_ignores_the_groups_names():
    X, _, batches, _ = _shifted_clusters()
    first = batch_corrected(X, batches)
    np.testing.assert_array_equal(first, batch_corrected(X, batches))
    np.testing.assert_array_equal(first, batch_corrected(X, np.where(batches == 1, "b", "a")))


@pytest.mark.parametrize("n_rows", [2, 3, 31])
def test_few_rows_are_corrected_without_failing(n_rows):
    X, _, _, _ = _shifted_clusters(n_per=20)
    rows = np.r_[np.arange(n_rows // 2 + 1), len(X) - np.arange(1, n_rows - n_rows // 2)][:n_rows]
    groups = np.arange(n_rows) % 2
    corrected = batch_corrected(X[rows], groups)
    assert corrected.shape == (n_rows, 8) and np.isfinite(corrected).all()


def test_a_balanced_graph_finds_rows_of_the_same_kind_across_batches():
    from cvae.neighbors.search import balanced_graph

    X, kinds, batches, _ = _shifted_clusters()
    graph = balanced_graph(X, batches, 10)
    across = batches[graph] != batches[:, None]
    # 0.948 searched without the correction: some rows' nearest in the other batch are the
    # edge of another kind's cloud, which the offset brings closest
    assert (kinds[graph][across] == np.broadcast_to(kinds[:, None], graph.shape)[across]).mean() > 0.99


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("distinct", [1, 3])
def test_rows_of_fewer_distinct_values_than_clusters_are_corrected_quietly(distinct):
    # 300 rows ask for 10 clusters; k-means finds only `distinct`
    X = np.repeat(np.random.default_rng(0).normal(size=(distinct, 5)), 300 // distinct, axis=0)
    corrected = batch_corrected(X, np.arange(len(X)) % 3)
    assert np.isfinite(corrected).all()
    np.testing.assert_allclose(corrected, X, atol=1e-3)  # equal rows in every batch: nothing to remove
