"""Sparse input: the same model as dense input, never densified as a whole."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cvae import CompressionVAE
from cvae.data.preprocessing import summarize

FIT = dict(hidden_layer_sizes=(32, 16), batch_size=64, max_steps=60, validation_interval=20, random_state=0,
           learning_rate="constant")


@pytest.fixture(scope="module")
def dense_fit(digits):
    X = digits[0][:600]
    vae = CompressionVAE(**FIT).fit(X)
    return X, vae


@pytest.mark.parametrize("make", [sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.csr_array, sp.coo_array],
                         ids=["csr", "csc", "coo", "csr_array", "coo_array"])
def test_sparse_input_trains_the_dense_model_bit_for_bit(dense_fit, make):
    X, dense = dense_fit
    vae = CompressionVAE(**FIT).fit(make(X))
    Z = dense.transform(X)
    np.testing.assert_array_equal(vae.transform(make(X)), Z)
    np.testing.assert_array_equal(vae.transform(X), Z)
    np.testing.assert_array_equal(vae.score_samples(make(X[:50])), dense.score_samples(X[:50]))
    np.testing.assert_array_equal(vae.inverse_transform(sp.csr_matrix(Z[:5])), dense.inverse_transform(Z[:5]))
    np.testing.assert_array_equal(vae.mean_, dense.mean_)
    assert vae.best_validation_loss_ == dense.best_validation_loss_


def test_sparse_npz_file_is_read_and_gives_the_same_model(dense_fit, tmp_path):
    X, dense = dense_fit
    sp.save_npz(tmp_path / "X.npz", sp.csr_matrix(X))
    vae = CompressionVAE(**FIT).fit(tmp_path / "X.npz")
    np.testing.assert_array_equal(vae.transform(tmp_path / "X.npz"), dense.transform(X))


def test_validation_data_may_be_sparse(dense_fit):
    X, _ = dense_fit
    a = CompressionVAE(**FIT).fit(X[:500], X_valid=X[500:])
    b = CompressionVAE(**FIT).fit(sp.csr_matrix(X[:500]), X_valid=sp.csr_matrix(X[500:]))
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


def test_no_more_rows_than_a_batch_are_densified(digits, monkeypatch):
    X = sp.csr_matrix(digits[0][:600])
    shapes = []
    for cls in (sp.csr_matrix, sp.csr_array):
        original = cls.toarray

        def spy(self, *args, _original=original, **kwargs):
            shapes.append(self.shape[0])
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, "toarray", spy)
    # the plain VAE: the neighbour graph of a small sparse matrix is searched dense (neighbor_search)
    vae = CompressionVAE(**dict(FIT, eval_batch_size=100, neighbor_weight=0)).fit(X)
    vae.transform(X)
    assert shapes and max(shapes) <= 100  # batches of 64, validation and transform chunks of 100


def test_sparse_statistics_match_dense_ones(digits):
    X = digits[0][:500].astype(np.float64)
    weights = np.random.default_rng(0).random(len(X))
    sparse = summarize([(sp.csr_matrix(X[:200]), weights[:200]), (sp.csr_matrix(X[200:]), weights[200:])],
                       log_counts=True)
    dense = summarize([(X, weights)], log_counts=True)
    for method in ("global", "feature"):
        for log in (False, True):
            for a, b in zip(sparse.normalization(method, log), dense.normalization(method, log)):
                np.testing.assert_allclose(a, b, rtol=1e-6)
    assert (sparse.low, sparse.high, sparse.integers) == (dense.low, dense.high, dense.integers) == (0, 16, True)


def test_neighbor_option_on_sparse_input_finds_the_same_neighbours(digits):
    from cvae.neighbors.search import neighbor_graph

    X = digits[0][:300].astype(np.float64) + np.random.default_rng(0).random((300, 64))  # no tied distances
    np.testing.assert_array_equal(neighbor_graph(sp.csr_matrix(X), 5), neighbor_graph(X, 5))
    vae = CompressionVAE(**dict(FIT, neighbor_weight=0.5, n_neighbors=5)).fit(sp.csr_matrix(digits[0][:600]))
    assert np.isfinite(vae.best_validation_loss_)


def test_broken_and_dense_npz_files_are_named(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match="broken.npz' is not a readable sparse .npz file"):
        CompressionVAE().fit(tmp_path / "broken.npz")
    np.savez(tmp_path / "dense.npz", X=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"dense.npz' holds no sparse matrix \(its arrays: X\).*read_array"):
        CompressionVAE().fit(tmp_path / "dense.npz")
    sp.save_npz(tmp_path / "nan.npz", sp.csr_matrix(np.array([[np.nan, 1.0], [0.0, 1.0]])))
    with pytest.raises(ValueError, match="nan.npz' contains NaN"):
        CompressionVAE().fit(tmp_path / "nan.npz")


def test_cli_fits_and_transforms_a_sparse_npz_file(digits, tmp_path, capsys):
    from cvae.cli import main

    sp.save_npz(tmp_path / "X.npz", sp.csr_matrix(digits[0][:300]))
    assert main(["fit", str(tmp_path / "X.npz"), "--logdir", str(tmp_path / "run"), "--max-steps", "40", "--seed",
                 "0", "--quiet", "--param", "validation_interval=20"]) == 0
    assert "fitted 300 samples x 64 features" in capsys.readouterr().out
    assert main(["transform", str(tmp_path / "run"), str(tmp_path / "X.npz"), "-o", str(tmp_path / "Z.npy")]) == 0
    vae = CompressionVAE.load(tmp_path / "run")
    np.testing.assert_array_equal(np.load(tmp_path / "Z.npy"), vae.transform(digits[0][:300]))


def test_rows_are_made_dense_from_the_csr_arrays_where_the_model_runs():
    from cvae.data.rows import densify_on

    block = sp.random(7, 11, density=0.3, format="csr", random_state=0, dtype=np.float64)
    dense = densify_on(block, torch.device("cpu"))  # the path a CUDA device takes
    assert dense.dtype == torch.float32
    np.testing.assert_array_equal(dense.numpy(), block.toarray().astype(np.float32))


def test_any_coo_layout_gives_the_dense_statistics_and_model():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=12, deadline=None)
    @given(st.integers(0, 2**31 - 1), st.booleans(), st.booleans(), st.booleans())
    def check(seed, duplicates, unsorted, explicit_zeros):
        rng = np.random.default_rng(seed)
        dense = (rng.random((40, 6)) < 0.4) * rng.integers(1, 9, (40, 6)).astype(np.float32)
        rows, cols = np.nonzero(dense)
        values = dense[rows, cols]
        if duplicates:  # each value split in two stored entries
            rows, cols, values = np.tile(rows, 2), np.tile(cols, 2), np.concatenate([values / 2, values / 2])
        if explicit_zeros:
            rows, cols, values = np.append(rows, [0, 1]), np.append(cols, [0, 0]), np.append(values, [0.0, 0.0])
        if unsorted:
            order = rng.permutation(len(values))
            rows, cols, values = rows[order], cols[order], values[order]
        coo = sp.coo_matrix((values.astype(np.float32), (rows, cols)), shape=dense.shape)
        assert np.array_equal(coo.toarray(), dense)
        a = CompressionVAE(**dict(FIT, max_steps=4, neighbor_weight=0)).fit(coo)
        b = CompressionVAE(**dict(FIT, max_steps=4, neighbor_weight=0)).fit(dense)
        # sparse and dense moments are summed in different orders: equal to float32's precision
        np.testing.assert_allclose(a.mean_, b.mean_, rtol=1e-6)
        np.testing.assert_allclose(a.scale_, b.scale_, rtol=1e-6)
        np.testing.assert_allclose(a.transform(coo), b.transform(dense), atol=1e-4)

    check()


def test_duplicate_sparse_entries_are_summed_as_the_dense_matrix_sums_them(X, fast):
    import scipy.sparse as sp

    dense = X[:200].astype(np.float32)
    csr = sp.csr_matrix(dense)
    # every value stored as two halves: the same matrix to toarray()
    doubled = sp.csr_matrix((np.repeat(csr.data / 2, 2), np.repeat(csr.indices, 2), 2 * csr.indptr), shape=dense.shape)
    assert not doubled.has_canonical_format and np.array_equal(doubled.toarray(), dense)
    a = CompressionVAE(**fast).fit(doubled)
    b = CompressionVAE(**fast).fit(dense)
    np.testing.assert_array_equal(a.scale_, b.scale_)
    np.testing.assert_array_equal(a.transform(doubled), b.transform(dense))
    assert not doubled.has_canonical_format  # the caller's matrix is not changed


def test_large_sparse_float32_values_are_summarized_as_dense_ones(fast):
    import scipy.sparse as sp

    X = np.zeros((100, 10), dtype=np.float32)
    X[::7, 3] = 1e25
    X[1::3, 5] = 2.0
    a = CompressionVAE(**dict(fast, max_steps=5)).fit(sp.csr_matrix(X))
    b = CompressionVAE(**dict(fast, max_steps=5)).fit(X)
    np.testing.assert_allclose(a.scale_, b.scale_, rtol=1e-6)
