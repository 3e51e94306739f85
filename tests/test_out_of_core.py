"""The estimator on data on disk: .npy files, directories of them, memmaps."""

import warnings

import numpy as np
import pytest
import torch

import cvae.data.batches
import cvae.data.graph
import cvae.data.preparation
from cvae import CompressionVAE
from cvae.data.rows import Split, TensorChunks
from cvae.files import transform_to_npy
from cvae.spec import build_module
from cvae.training import LogDir
from cvae.training.trainer import evaluate


def quiet_fit(X, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CompressionVAE(**params).fit(X)


@pytest.fixture
def on_disk(digits, tmp_path):
    """The digits as a .npy file, a directory of 100-row shards, and the array."""
    X = digits[0][:600]
    np.save(tmp_path / "X.npy", X)
    for i in range(0, 600, 100):
        (tmp_path / "shards" / f"{i // 300}").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "shards" / f"{i // 300}" / f"{i:04d}.npy", X[i : i + 100])
    return X, tmp_path


def test_files_and_memmaps_fit_the_same_model_as_the_array(on_disk, fast):
    X, path = on_disk
    reference = quiet_fit(X, **fast, placement="encoder")  # what placement="auto" is for streamed rows
    Z = reference.transform(X)
    for data in (path / "X.npy", str(path / "shards"), np.load(path / "X.npy", mmap_mode="r")):
        vae = quiet_fit(data, **fast)
        assert vae.n_features_in_ == 64 and not hasattr(vae, "feature_names_in_") and vae.neighbor_weight_ == 0.4
        np.testing.assert_array_equal(vae.transform(X), Z)
        np.testing.assert_array_equal(vae.transform(data), Z)


def test_every_method_streams_files(on_disk, fast):
    X, path = on_disk
    vae = quiet_fit(X, **fast)
    np.testing.assert_array_equal(vae.score_samples(path / "X.npy"), vae.score_samples(X))
    Z = vae.transform(X)
    np.save(path / "Z.npy", Z)
    np.testing.assert_array_equal(vae.inverse_transform(path / "Z.npy"), vae.inverse_transform(Z))


def test_many_buffers_per_epoch_train_as_well_as_memory(on_disk, fast, monkeypatch):
    X, path = on_disk
    params = dict(fast, max_steps=300, learning_rate="constant")
    in_memory = quiet_fit(X, **params)
    # 16 rows per buffer: 34 buffers an epoch
    for module in (cvae.data.preparation, cvae.data.graph, cvae.data.batches):
        monkeypatch.setattr(module, "STREAM_BUFFER_BYTES", 4096)
    streamed = quiet_fit(path / "X.npy", **params)  # neighbours read from the file, validation re-read
    assert streamed.n_steps_ == 300 and streamed.neighbor_weight_ == 0.4
    assert abs(streamed.best_validation_loss_ / in_memory.best_validation_loss_ - 1) < 0.05


def test_bad_values_in_a_file_name_the_rows_and_the_file(on_disk, fast):
    X, path = on_disk
    X = X.copy()
    X[250, 3] = np.nan
    np.save(path / "nan.npy", X)
    with pytest.raises(ValueError, match=r"X contains NaN in rows \d+ to \d+ of '.*nan.npy'"):
        CompressionVAE(**fast).fit(path / "nan.npy")
    vae = quiet_fit(path / "X.npy", **fast)
    with pytest.raises(ValueError, match=r"X contains NaN in rows 0 to 599 of '.*nan.npy'"):
        vae.transform(path / "nan.npy")
    np.save(path / "narrow.npy", X[:, :10])
    with pytest.raises(ValueError, match="has 10 features, but CompressionVAE is expecting 64"):
        vae.transform(path / "narrow.npy")
    with pytest.raises(ValueError, match="Z .* has 64 columns, but this CompressionVAE has n_components=2"):
        vae.inverse_transform(path / "X.npy")
    with pytest.raises(ValueError, match=r"X_valid \('.*narrow.npy'\) has 10 features, but X has 64"):
        CompressionVAE(**fast).fit(path / "X.npy", X_valid=path / "narrow.npy")


def test_transform_to_npy_writes_what_transform_returns(on_disk, fast):
    X, path = on_disk
    vae = quiet_fit(X, **fast)
    shape = transform_to_npy(vae, path / "shards", path / "out" / "Z.npy", chunk_size=128)
    assert shape == (600, 2)
    np.testing.assert_array_equal(np.load(path / "out" / "Z.npy"), vae.transform(X))
    transform_to_npy(vae, path / "X.npy", path / "out" / "elbo.npy", method="score_samples", chunk_size=77)
    np.testing.assert_array_equal(np.load(path / "out" / "elbo.npy"), vae.score_samples(X))
    transform_to_npy(vae, X[:5], path / "out" / "small.npy")  # arrays in memory too
    np.testing.assert_array_equal(np.load(path / "out" / "small.npy"), vae.transform(X[:5]))
    assert sorted(p.name for p in (path / "out").iterdir()) == ["Z.npy", "elbo.npy", "small.npy"]  # no temp files


def test_resumed_run_validates_on_the_saved_split(on_disk, fast, tmp_path):
    X, path = on_disk
    run = LogDir(tmp_path / "run")
    first = quiet_fit(path / "X.npy", **dict(fast, logdir=run.path, neighbor_weight=0))  # the ELBO alone
    validation_rows, n_samples = run.read_split()
    assert n_samples == 600 and len(validation_rows) == 60
    np.testing.assert_array_equal(validation_rows, np.sort(validation_rows))

    # Replace the saved split: the continued run must validate on exactly these rows.
    chosen = np.arange(0, 600, 20)
    run.write_split(Split(chosen, 600))
    quiet_fit(path / "X.npy", **dict(fast, logdir=run.path, neighbor_weight=0, warm_start=True,
                                     max_steps=first.n_steps_ + 20))
    spec = run.read_params()[1]
    state = run.read_checkpoint(spec)
    module = build_module(spec, state["model"])
    expected = evaluate(module, TensorChunks(torch.from_numpy(X[chosen]), 4096))["loss"]
    assert state["history"][-1]["validation_loss"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # a 5-step fit
def test_resuming_on_data_of_another_length_warns_and_splits_anew(on_disk, fast, tmp_path):
    X, _ = on_disk
    first = quiet_fit(X, **dict(fast, logdir=tmp_path / "run"))
    with pytest.warns(UserWarning, match="split 600 samples into training and validation, but X has 500"):
        CompressionVAE(**dict(fast, logdir=tmp_path / "run", warm_start=True, max_steps=first.n_steps_ + 5)).fit(
            X[:500]
        )
    assert LogDir(tmp_path / "run").read_split().n_samples == 500


def test_nan_in_a_fortran_ordered_file_is_caught(on_disk, fast):
    X, path = on_disk
    vae = quiet_fit(X, **fast)
    bad = np.asfortranarray(X.copy())
    bad[3, 3] = np.nan
    np.save(path / "fortran.npy", bad)  # read into memory, not row by row: still checked
    with pytest.raises(ValueError, match=r"X contains NaN in rows 0 to 599 of '.*fortran.npy'"):
        vae.transform(path / "fortran.npy")


def test_rows_too_large_for_the_device_stay_on_the_host_and_train_the_same_model(digits, fast, monkeypatch):
    X = digits[0][:600]
    reference = quiet_fit(X, neighbor_weight=0.05, **fast)
    asked = []

    def never_fits(n_bytes, device):
        asked.append(n_bytes)
        return False

    monkeypatch.setattr(cvae.data.batches, "fits_on_device", never_fits)
    vae = quiet_fit(X, neighbor_weight=0.05, **fast)
    assert sorted(asked) == [60 * 64 * 4, 540 * 64 * 4]  # the validation and the training rows
    np.testing.assert_array_equal(vae.transform(X), reference.transform(X))


def test_a_continued_run_reads_its_neighbour_graph_and_searches_again_for_other_rows(
        on_disk, fast, tmp_path, monkeypatch):
    X, path = on_disk
    searched = []
    search = cvae.data.graph.neighbor_graph
    monkeypatch.setattr(cvae.data.graph, "neighbor_graph",
                        lambda A, k, **kw: searched.append(k) or search(A, k, **kw))
    run = LogDir(tmp_path / "run")
    first = quiet_fit(path / "X.npy", **dict(fast, logdir=run.path))
    assert searched == [15, 1]  # the training graph, and the validation rows' nearest neighbour
    with np.load(run.file(run.NEIGHBORS)) as saved:
        graph = saved["graph"]
    assert graph.shape == (540, 15)
    quiet_fit(path / "X.npy", **dict(fast, logdir=run.path, warm_start=True, max_steps=first.n_steps_ + 10))
    assert searched == [15, 1, 1]  # the training graph was read
    np.save(path / "X.npy", X[::-1].copy())  # other rows, same shape: searched again, and replaced
    quiet_fit(path / "X.npy", **dict(fast, logdir=run.path, warm_start=True, max_steps=first.n_steps_ + 20))
    assert searched == [15, 1, 1, 15, 1]
    with np.load(run.file(run.NEIGHBORS)) as saved:
        assert not np.array_equal(saved["graph"], graph)
    run.file(run.NEIGHBORS).write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"Cannot read the saved neighbour graph .*neighbors.npz .*Delete it"):
        quiet_fit(path / "X.npy", **dict(fast, logdir=run.path, warm_start=True, max_steps=first.n_steps_ + 30))
