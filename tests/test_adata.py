"""AnnData input: in memory, backed, and as an .h5ad file streamed from disk."""

import numpy as np
import pytest
import scipy.sparse as sp

from cvae import CompressionVAE
from cvae.datasets import make_counts

anndata = pytest.importorskip("anndata")

FIT = dict(hidden_layer_sizes=(32, 16), batch_size=64, max_steps=60, validation_interval=20, random_state=0,
           learning_rate="constant")


@pytest.fixture(scope="module")
def adata():
    X, labels, _ = make_counts(500, 60, n_clusters=4, random_state=0)
    return anndata.AnnData(X=np.log1p(X.toarray()), layers={"counts": X})


@pytest.mark.parametrize("layer, likelihood", [(None, "gaussian"), ("counts", "negative_binomial")])
def test_anndata_and_its_h5ad_file_give_the_same_embedding(adata, tmp_path, layer, likelihood):
    kw = dict(FIT, layer=layer, likelihood=likelihood, neighbor_weight=0)  # a file trains the plain VAE
    matrix = adata.X if layer is None else adata.layers[layer]
    in_memory = CompressionVAE(**kw).fit(adata)
    Z = in_memory.transform(adata)
    np.testing.assert_array_equal(Z, CompressionVAE(**kw).fit(matrix).transform(matrix))
    adata.write_h5ad(tmp_path / "a.h5ad")
    from_file = CompressionVAE(**kw).fit(tmp_path / "a.h5ad")
    np.testing.assert_array_equal(from_file.transform(tmp_path / "a.h5ad"), Z)
    backed = anndata.read_h5ad(tmp_path / "a.h5ad", backed="r")
    np.testing.assert_array_equal(from_file.transform(backed), Z)
    adata.obsm["X_cvae"] = Z  # the embedding goes where scanpy looks for it
    assert adata.obsm["X_cvae"].shape == (500, 2)


def test_missing_layer_and_missing_x_are_clear_errors(adata, tmp_path):
    with pytest.raises(ValueError, match=r"X \(an AnnData\) has no layer 'raw'; its layers: counts"):
        CompressionVAE(**dict(FIT, layer="raw")).fit(adata)
    empty = anndata.AnnData(obs={"cell": np.arange(5).astype(str)})
    with pytest.raises(ValueError, match=r"has no X matrix; choose one of its layers with the layer parameter"):
        CompressionVAE(**FIT).fit(empty)
    adata.write_h5ad(tmp_path / "a.h5ad")
    with pytest.raises(ValueError, match=r"a.h5ad' has no layer 'raw'; its layers: counts"):
        CompressionVAE(**dict(FIT, layer="raw")).fit(tmp_path / "a.h5ad")
    (tmp_path / "broken.h5ad").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match=r"broken.h5ad' is not a readable .h5ad file"):
        CompressionVAE(**FIT).fit(tmp_path / "broken.h5ad")


def test_columnwise_h5ad_is_refused_with_the_fix(adata, tmp_path):
    by_columns = anndata.AnnData(X=sp.csc_matrix(adata.layers["counts"]))
    by_columns.write_h5ad(tmp_path / "csc.h5ad")
    with pytest.raises(ValueError, match=r"stored by columns \(CSC\).*anndata.read_h5ad"):
        CompressionVAE(**FIT).fit(tmp_path / "csc.h5ad")
    CompressionVAE(**FIT).fit(anndata.read_h5ad(tmp_path / "csc.h5ad"))  # in memory it is converted


def test_counts_in_a_gaussian_layer_are_checked_under_a_count_likelihood(adata):
    with pytest.raises(ValueError, match="not whole numbers"):
        CompressionVAE(**dict(FIT, likelihood="poisson")).fit(adata)  # .X holds log1p of counts


def test_cli_reads_an_h5ad_layer(adata, tmp_path, capsys):
    from cvae.cli import main

    adata.write_h5ad(tmp_path / "a.h5ad")
    assert main(["fit", str(tmp_path / "a.h5ad"), "--layer", "counts", "--likelihood", "poisson",
                 "--logdir", str(tmp_path / "run"), "--max-steps", "40", "--seed", "0", "--quiet"]) == 0
    assert "fitted 500 samples x 60 features" in capsys.readouterr().out
    vae = CompressionVAE.load(tmp_path / "run")
    assert (vae.layer, vae.likelihood_) == ("counts", "poisson")


def test_a_view_of_a_backed_anndata_is_its_own_rows(adata, tmp_path):
    adata.write_h5ad(tmp_path / "a.h5ad")
    backed = anndata.read_h5ad(tmp_path / "a.h5ad", backed="r")
    view = backed[:50]
    vae = CompressionVAE(**dict(FIT, max_steps=10)).fit(adata.X[:300])
    np.testing.assert_array_equal(vae.transform(view), vae.transform(adata.X[:50]))
    assert vae.score_samples(view).shape == (50,)
    backed.file.close()


def test_cli_fits_and_transforms_a_layer_of_a_file_whose_x_it_cannot_read(adata, tmp_path):
    from cvae.cli import main

    no_x = anndata.AnnData(X=None, obs=adata.obs, var=adata.var, layers={"counts": adata.layers["counts"]})
    no_x.write_h5ad(tmp_path / "no_x.h5ad")
    csc_x = anndata.AnnData(X=sp.csc_matrix(adata.X), layers={"counts": sp.csr_matrix(adata.layers["counts"])})
    csc_x.write_h5ad(tmp_path / "csc_x.h5ad")
    for name in ("no_x", "csc_x"):
        path, run = tmp_path / f"{name}.h5ad", tmp_path / f"run_{name}"
        assert main(["fit", str(path), "--layer", "counts", "--likelihood", "poisson", "--logdir", str(run),
                     "--max-steps", "10", "--quiet"]) == 0
        assert main(["transform", str(run), str(path), "-o", str(tmp_path / f"{name}_z.npy")]) == 0
        assert np.load(tmp_path / f"{name}_z.npy").shape == (500, 2)


def test_labels_of_a_streamed_h5ad_file_come_from_its_obs(tmp_path):
    anndata = pytest.importorskip("anndata")
    from cvae import CompressionVAE

    rng = np.random.default_rng(0)
    X = rng.random((200, 6), dtype=np.float32)
    kind = np.where(X[:, 0] > 0.5, "a", "b")
    anndata.AnnData(X, obs={"kind": kind}).write_h5ad(tmp_path / "cells.h5ad")
    vae = CompressionVAE(hidden_layer_sizes=(16,), max_steps=20, random_state=0)
    vae.fit(str(tmp_path / "cells.h5ad"), "kind")  # read a block at a time; the column from the file's obs
    assert vae.classes_.tolist() == ["a", "b"]
