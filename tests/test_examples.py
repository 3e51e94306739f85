"""Every example runs end to end, in a fast mode (small step budgets), and does what it says."""

import runpy
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def run_example(name, argv):
    module = runpy.run_path(str(ROOT / "examples" / f"{name}.py"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return module["main"](argv)


def test_quickstart(tmp_path, capsys):
    vae = run_example("quickstart", ["--max-steps", "100", "--logdir", str(tmp_path / "run")])
    assert vae.n_steps_ == 100
    assert "identical embedding" in capsys.readouterr().out


def test_mnist_embedding_from_an_npz_path(tmp_path, digits, capsys, png_size):
    pytest.importorskip("matplotlib")
    # A stand-in for mnist.npz with the same keys: digits scaled to uint8 8x8 images.
    X, y = digits
    images = np.round(X * 255 / 16).astype(np.uint8)
    np.savez(tmp_path / "small.npz", X_train=images[:1400], y_train=y[:1400], X_test=images[1400:], y_test=y[1400:])
    vae, knn = run_example("mnist_embedding", ["--data", str(tmp_path / "small.npz"), "--max-steps", "300",
                                               "--out-dir", str(tmp_path)])
    assert vae.likelihood_ == "bernoulli" and knn > 0.4  # chance: 0.1
    assert png_size(tmp_path / "mnist_embedding.png") == (700, 600)
    assert png_size(tmp_path / "mnist_latent_grid.png") == (800, 800)
    assert "10-NN accuracy of the unseen test digits" in capsys.readouterr().out


def test_add_classes_keeps_the_first_ones_in_place(capsys):
    vae, moved, knn = run_example("add_classes", ["--passes", "4", "--loose-passes", "2", "--max-steps", "300"])
    # With landmark_weight=0 throughout, the 0-4s move 0.34 here (0.15 with it). Above 0.8 only if the
    # 5-9s found places of their own: mapped onto the 0-4s' (as UMAP's transform does) all classes score
    # about 0.62 (benchmarks/README.md, "partial_fit").
    assert moved < 0.25 and knn > 0.8
    assert f"moved {moved:.3f} of their spread" in capsys.readouterr().out


def test_grid_search_in_a_pipeline(capsys):
    search, accuracy = run_example("grid_search", ["--max-steps", "40"])
    assert len(search.cv_results_["params"]) == 4 and np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_score_ == max(search.cv_results_["mean_test_score"])
    assert accuracy > 0.3  # chance: 0.1


def test_generate_and_interpolate(tmp_path, png_size):
    pytest.importorskip("matplotlib")
    out = tmp_path / "generated.png"
    generated, path = run_example("generate_and_interpolate", ["--max-steps", "200", "--out", str(out)])
    assert generated.shape == (8, 64) and path.shape == (8, 64)
    assert ((0 <= path) & (path <= 1)).all()
    assert png_size(out) == (800, 240)


def test_npy_directory(tmp_path):
    vae, Z = run_example("npy_directory", ["--root", str(tmp_path / "data"), "--max-steps", "50"])
    assert sum(1 for _ in (tmp_path / "data").rglob("*.npy")) == 1797
    assert vae.n_features_in_ == 64 and Z.shape == (183, 2)  # the 3s


def test_interrupt_and_resume(tmp_path, ctrl_c_raises):
    vae, resumed = run_example("interrupt_and_resume", ["--logdir", str(tmp_path / "run"), "--after", "1.0",
                                                        "--max-steps", "500"])
    assert vae.stop_reason_ == "interrupted" and 0 < vae.n_steps_ < 500
    assert resumed.n_steps_ == 500 and resumed.stop_reason_ == "max_steps"


def test_latent_usage(capsys):
    rows = run_example("latent_usage", ["--max-steps", "600"])  # at 300 the plain model uses no dimension
    plain, floored = rows["plain"], rows["free bits 0.5"]
    for row in rows.values():
        assert row["iwae_100"] >= row["elbo"] - 0.5  # a tighter bound, up to sampling noise
        assert 1 <= row["active_units"] <= 16
    assert floored["active_units"] >= plain["active_units"]
    assert "active units" in capsys.readouterr().out


def test_single_cell_counts(capsys):
    vae, ari = run_example("single_cell_counts", ["--cells", "800", "--genes", "300", "--max-steps", "300"])
    assert vae.likelihood_ == "negative_binomial" and vae.n_features_in_ == 300
    assert ari > 0.4  # 8 generated cell types; chance: 0
    assert "expected counts per 10,000" in capsys.readouterr().out


def test_sparse_text():
    vae, accuracy = run_example("sparse_text", ["--documents", "800", "--max-steps", "300"])
    assert vae.likelihood_ == "gaussian"
    assert accuracy > 0.8  # 5 topics; chance: 0.2


def test_train_ddp_runs_in_one_process(tmp_path, capsys):
    vae = run_example("train_ddp", ["--logdir", str(tmp_path / "run"), "--max-steps", "30"])
    assert vae.n_steps_ == 30 and (tmp_path / "run" / "checkpoint.pt").exists()
    assert "rank 0 of 1: 30 steps" in capsys.readouterr().out


def test_semi_supervised(capsys):
    results = run_example("semi_supervised", ["--share", "0.3", "--target-weight", "1", "--max-steps", "150"])
    (plain_purity, _), (semi_purity, semi_accuracy) = results["no labels"], results["30% of labels"]
    assert semi_purity > plain_purity and semi_accuracy > 0.5  # chance: 0.1
    assert "classes seen: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in capsys.readouterr().out


def test_serve_onnx_embeds_without_cvae(tmp_path, digits, exported_transform):
    import subprocess
    import sys

    vae, path = exported_transform.vae, exported_transform.path  # the neighbour placement, its rows inside
    X = digits[0]
    np.save(tmp_path / "rows.npy", X[1000:1300])
    script = ROOT / "examples" / "serve_onnx.py"
    # a fresh interpreter, as a service would run it: the example asserts that cvae was never imported
    subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "rows.npy"), "-o", str(tmp_path / "Z.npy")],
                   check=True, capture_output=True, cwd=tmp_path)
    Z = vae.transform(X[1000:1300])
    np.testing.assert_allclose(np.load(tmp_path / "Z.npy"), Z, atol=1e-3 * np.linalg.norm(Z.std(axis=0)), rtol=0)


def test_integrate_batches(capsys):
    result = run_example("integrate_batches", ["--cells", "450", "--max-steps", "60"])
    assert result["integrated"] < result["plain"]  # the covariate mixes the batches (0.5: chance)
    assert result["correlation"] > 0.5 and 0 < result["moved"] < 0.1 and result["accuracy"] > 0.5  # 8 types
    assert "3. batch 2 mapped: the reference moved 0.0" in capsys.readouterr().out
