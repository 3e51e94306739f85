"""One training run (cvae.training.run): how it ends, what it saves."""

import json
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from cvae import CompressionVAE

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ROW_PARTS = ("reservoir", "landmarks", "reference")


def test_a_fit_that_never_validates_finitely_warns(X, fast):
    with pytest.warns(ConvergenceWarning, match="No validation loss was finite"):
        vae = CompressionVAE(**dict(fast, learning_rate_init=1e30)).fit(X)
    assert vae.stop_reason_ == "diverged" and vae.best_validation_loss_ == float("inf")


@pytest.mark.parametrize(
    "reason, best, category, message",
    [
        ("interrupted", 1.0, UserWarning, "Training interrupted at step 7"),
        ("diverged", 1.0, RuntimeWarning, "Training diverged .* at step 7"),
        ("diverged", float("inf"), ConvergenceWarning, "No validation loss was finite in 7 steps"),
        ("max_steps", float("inf"), ConvergenceWarning, "No validation loss was finite"),
        ("max_steps", 1.0, ConvergenceWarning, "Reached max_steps=9"),
    ],
)
def test_each_way_a_fit_ends_badly_is_warned(reason, best, category, message):
    from cvae.training.plan import TrainingPlan
    from cvae.training.run import warn_on_stop

    params = CompressionVAE(learning_rate="adaptive", learning_rate_min=1e-5).get_params()
    params = TrainingPlan.from_params(params, max_steps=9, neighbor_weight=0.4)
    with pytest.warns(category, match=message):
        warn_on_stop(params, {"stop_reason": reason, "step": 7, "best_loss": best})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_on_stop(params, {"stop_reason": "converged", "step": 7, "best_loss": 1.0})


def test_numpy_scalar_parameters_are_saved_with_the_run(tmp_path, X, fast):
    params = dict(fast, max_steps=np.int64(20), random_state=np.int64(3), n_components=np.int64(2),
                  learning_rate_init=np.float32(1e-3))
    vae = CompressionVAE(logdir=tmp_path / "run", **params).fit(X[:200])
    saved = json.loads((tmp_path / "run" / "params.json").read_text())["params"]
    assert saved["max_steps"] == 20 and saved["random_state"] == 3 and vae.n_steps_ == 20
    np.testing.assert_array_equal(CompressionVAE.load(tmp_path / "run").transform(X[:5]), vae.transform(X[:5]))


def test_the_classifier_trains_on_every_labelled_row_run_and_stored_in_one_term():
    from types import SimpleNamespace

    from cvae.data.sources import ArraySource
    from cvae.training.run import classifier_losses

    plan = SimpleNamespace(classifier_weight=0.5)
    spec = SimpleNamespace(model=SimpleNamespace(n_classes=3), n_features=4, seed=0)
    X = np.arange(24, dtype=np.float32).reshape(6, 4)
    stored = (np.full((3, 4), -1.0, dtype=np.float32), np.array([2, -1, 0]))  # an unlabelled row among them
    [term] = classifier_losses(plan, spec, ArraySource(X), np.arange(6), np.array([-1, 1, -1, 0, -1, -1]), stored)
    assert term.weight == 2.0 and term.codes.tolist() == [2, 0, 1, 0]  # the stored labelled rows, then the run's
    np.testing.assert_array_equal(term.source.array[term.indices], np.vstack([np.full((2, 4), -1.0), X[[1, 3]]]))
    [alone] = classifier_losses(plan, spec, None, None, None, stored)  # an update without labels
    assert alone.codes.tolist() == [2, 0] and len(alone.indices) == 2
    assert classifier_losses(plan, spec, ArraySource(X), np.arange(6), np.full(6, -1)) == []
    assert classifier_losses(SimpleNamespace(classifier_weight=0.0), spec, ArraySource(X), np.arange(6),
                             np.zeros(6, dtype=int), stored) == []
