"""The original CompressionVAE interface (cvae.cvae: ``from cvae import cvae``), run with the original README's code."""

import _thread
import json
import textwrap
import types
import warnings

import numpy as np
import pytest

from cvae import cvae
from cvae.training import LogDir, Trainer

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# The original README's code blocks, verbatim. Only the download of MNIST is replaced by
# a small dataset (the `mnist` namespace below), and the long training runs are stopped
# with a real Ctrl-C, which the README says saves the model.
BASIC = """
from cvae import cvae
embedder = cvae.CompressionVAE(X)
embedder.train()
z = embedder.embed(X)
embedder.visualize(z, labels=[int(label) for label in mnist.target])
X_reconstructed = embedder.decode(z)
import numpy as np
# Combine the two examples and add batch dimension
z_interp = np.expand_dims(0.5*z[0] + 0.5*z[1], axis=0)
# Decode the new latent vector.
X_interp = embedder.decode(z_interp)
"""

ADVANCED = """
embedder = cvae.CompressionVAE(X,
                               train_valid_split=0.99,
                               dim_latent=16,
                               iaf_flow_length=10,
                               cells_encoder=[512, 256, 128],
                               initializer='lecun_normal',
                               batch_size=32,
                               batch_size_test=128,
                               logdir='~/mnist_16d',
                               feature_normalization=False,
                               tb_logging=True)
embedder.train(learning_rate=1e-4,
               num_steps=2000,
               dropout_keep_prob=0.6,
               test_every=50,
               lr_scheduling=False)
"""

GRID = "embedder.visualize_latent_grid(xy_range=(-4.0, 4.0), grid_size=10, shape=(8, 8))"


@pytest.fixture
def mnist_like(digits):
    X, y = digits
    # fetch_openml gives string targets, as the README's int(label) conversion expects.
    return types.SimpleNamespace(data=X[:300], target=y[:300].astype(str))


@pytest.fixture
def ctrl_c_at_step(monkeypatch, ctrl_c_raises):
    """Signal SIGINT to the main thread, as Ctrl-C does, when training reaches a step."""

    def arm(step):
        original = Trainer._train_step

        def train_step(self, batch):
            if self.step == step:
                _thread.interrupt_main()
            return original(self, batch)

        monkeypatch.setattr(Trainer, "_train_step", train_step)

    return arm


def run_readme(code, namespace):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Training interrupted", UserWarning)
        exec(textwrap.dedent(code), namespace)
    return namespace


@pytest.fixture(autouse=True)
def in_tmp_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_readme_basic_use_runs_unchanged(mnist_like, ctrl_c_at_step, tmp_path):
    ctrl_c_at_step(300)
    ns = run_readme(BASIC, {"X": mnist_like.data, "mnist": mnist_like})
    embedder = ns["embedder"]
    assert embedder.estimator.stop_reason_ == "interrupted" and embedder.estimator.n_steps_ >= 300
    assert ns["z"].shape == (300, 2) and np.isfinite(ns["z"]).all()
    assert ns["X_reconstructed"].shape == (300, 64) and ns["X_interp"].shape == (1, 64)
    # The original's defaults, mapped onto the estimator.
    params = embedder.estimator.get_params()
    assert params["iaf_flow_length"] == 5 and params["batch_size"] == 64 and params["normalize"] == "feature"
    assert params["dropout"] == pytest.approx(0.25) and params["validation_interval"] == 50
    assert params["validation_fraction"] == pytest.approx(0.1) and params["max_steps"] == 50000
    # The model was saved in ./temp when Ctrl-C stopped it.
    assert LogDir(tmp_path / "temp").has_run()


def test_readme_advanced_use_and_restart(mnist_like, ctrl_c_at_step, tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    ctrl_c_at_step(120)
    ns = run_readme(ADVANCED, {"X": mnist_like.data, "cvae": cvae})
    embedder = ns["embedder"]
    params = embedder.estimator.get_params()
    expected = dict(n_components=16, iaf_flow_length=10, hidden_layer_sizes=(512, 256, 128),
                    initializer="lecun_normal", batch_size=32, eval_batch_size=128, normalize="none",
                    tensorboard=True, learning_rate="constant", learning_rate_init=1e-4, max_steps=2000,
                    validation_interval=50)
    assert {k: params[k] for k in expected} == expected
    assert params["dropout"] == pytest.approx(0.4) and params["validation_fraction"] == pytest.approx(0.01)
    logdir = tmp_path / "home" / "mnist_16d"  # "~" is expanded (the original made a directory named "~")
    assert embedder.logdir == str(logdir) and any(p.name.startswith("events.out") for p in logdir.iterdir())
    steps = embedder.estimator.n_steps_

    # "Restarting an existing model": same logdir, model arguments ignored, training continues.
    restored = cvae.CompressionVAE(mnist_like.data, dim_latent=3, logdir="~/mnist_16d")
    assert restored.is_trained and restored.estimator.n_components == 16
    np.testing.assert_array_equal(restored.embed(mnist_like.data), embedder.embed(mnist_like.data))
    restored.train(num_steps=steps + 10)  # without overwrite=True: a message, no training
    assert restored.estimator.n_steps_ == steps
    restored.train(num_steps=steps + 10, overwrite=True, lr_scheduling=False)
    assert restored.estimator.n_steps_ == steps + 10

    # A restored model embeds and decodes without any data.
    bare = cvae.CompressionVAE(logdir="~/mnist_16d")
    assert bare.decode(np.zeros(16)).shape == (1, 64)


def test_latent_grid_and_visualize_without_labels_save_pngs(mnist_like, tmp_path):
    embedder = cvae.CompressionVAE(mnist_like.data, iaf_flow_length=0)
    embedder.train(num_steps=60, test_every=20)
    import matplotlib.pyplot as plt

    run_readme(GRID, {"embedder": embedder})  # shown with pyplot, as the original did
    (image,) = plt.gcf().axes[0].get_images()
    assert image.get_array().shape == (10 * 8, 10 * 8)
    z = embedder.embed(mnist_like.data)
    # The original crashed without labels; string labels are ordered, not in set order.
    fig = embedder.visualize(z, filename=tmp_path / "plain.png")
    assert fig.get_size_inches().tolist() == [12, 10] and (tmp_path / "plain.png").stat().st_size > 1000
    fig = embedder.visualize(z, labels=list(mnist_like.target), filename=tmp_path / "labels.png")
    ticks = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert ticks == [str(d) for d in range(10)]
    embedder.visualize_latent_grid(shape=(8, 8), clip=(0, 16), filename=tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"


def test_temp_logdir_starts_afresh_and_keeps_foreign_files(mnist_like, tmp_path):
    first = cvae.CompressionVAE(mnist_like.data, iaf_flow_length=0).train(num_steps=30, test_every=10)
    (tmp_path / "temp" / "notes.txt").write_text("mine")
    second = cvae.CompressionVAE(mnist_like.data, iaf_flow_length=0)
    assert not second.is_trained and first.is_trained
    assert (tmp_path / "temp" / "notes.txt").read_text() == "mine"
    assert not LogDir(tmp_path / "temp").has_run()


def test_named_logdir_without_a_model_needs_data(tmp_path):
    with pytest.raises(ValueError, match="No model to restore .* pass the training data X"):
        cvae.CompressionVAE(logdir=str(tmp_path / "empty"))


def test_tensorflow_logdir_is_refused_untouched(mnist_like, tmp_path):
    old = tmp_path / "tf_model"
    old.mkdir()
    (old / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-2000"')
    (old / "params.json").write_text(json.dumps({"dim_feature": 64, "dim_latent": 2}))
    with pytest.raises(ValueError, match="TensorFlow CompressionVAE model"):
        cvae.CompressionVAE(mnist_like.data, logdir=str(old))
    assert json.loads((old / "params.json").read_text()) == {"dim_feature": 64, "dim_latent": 2}


def test_directory_of_npy_files_as_X(mnist_like, tmp_path):
    root = tmp_path / "my_dataset"
    for i, row in enumerate(mnist_like.data[:100]):
        folder = root / f"class_{mnist_like.target[i]}"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i:04d}.npy", row)
    embedder = cvae.CompressionVAE(X=str(root), iaf_flow_length=0)
    embedder.train(num_steps=20, test_every=10)
    assert embedder.estimator.n_features_in_ == 64
    Z = embedder.embed(str(root))
    assert Z.shape == (100, 2)
    order = np.argsort([f"class_{mnist_like.target[i]}/{i:04d}.npy" for i in range(100)])  # sorted path order
    np.testing.assert_allclose(Z, embedder.embed(mnist_like.data[:100][order]), rtol=1e-6, atol=1e-6)
