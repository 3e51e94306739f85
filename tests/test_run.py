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
