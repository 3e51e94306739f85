"""TensorBoard event files (cvae.training.tensorboard): what they hold, and the extra they need."""

import sys

import pytest

from cvae import CompressionVAE

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def params(fast, tmp_path):
    return dict(fast, checkpoint_interval=20, logdir=str(tmp_path / "run"))


def test_tensorboard_needs_a_logdir(X, fast):
    with pytest.raises(ValueError, match="tensorboard=True writes event files into logdir"):
        CompressionVAE(tensorboard=True, **fast).fit(X)


def test_tensorboard_without_the_package_names_the_extra_to_install(X, params, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install tensorboard"):
        CompressionVAE(**dict(params, tensorboard=True)).fit(X)


def test_tensorboard_events_hold_losses_kl_learning_rate_and_figures(X, params):
    pytest.importorskip("torch.utils.tensorboard")
    pytest.importorskip("matplotlib")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vae = CompressionVAE(**dict(params, tensorboard=True)).fit(X)
    events = EventAccumulator(params["logdir"]).Reload()
    tags = events.Tags()
    assert set(tags["scalars"]) == {"loss/train", "loss/validation", "validation/kl", "validation/elbo",
                                    "validation/reconstruction_log_likelihood", "learning_rate"}
    kl = events.Scalars("validation/kl")
    assert [e.step for e in kl] == [row["step"] for row in vae.history_]
    assert [e.value for e in kl] == pytest.approx([row["validation_kl"] for row in vae.history_], rel=1e-6)
    assert set(tags["images"]) == {"embedding", "latent_grid"}  # 64 features: 8x8 images
    (image,) = events.Images("latent_grid")
    assert image.step == vae.n_steps_ and (image.width, image.height) == (800, 800)
