"""A run widened for new covariate categories (cvae/training/widen.py)."""

import numpy as np
import torch

from cvae import CompressionVAE
from cvae.data.covariates import covariate_table
from cvae.spec import build_module
from cvae.training.widen import widened


def test_new_categories_widen_the_weights_moments_and_stored_rows():
    rng = np.random.default_rng(0)
    X = rng.random((80, 5)).astype(np.float32)
    batch = np.array(["a", "b"] * 40)
    vae = CompressionVAE(hidden_layer_sizes=(8,), n_components=2, max_steps=5, random_state=0).fit(X, covariates=batch)
    spec, state = vae.spec_, vae._checkpoint
    assert widened(spec, state, covariate_table(np.array(["b", "a"])))[2] is None  # nothing new: nothing changes
    wide, new_state, columns = widened(spec, state, covariate_table(np.array(["c", "a", "c"])))
    assert wide.covariates.columns[0].categories == ("a", "b", "c") and wide.model.n_covariates == 3
    assert columns == {"encoder.0.weight": [5 + 2], "decoder.0.0.weight": [2 + 2]}
    for name, column in (("encoder.0.weight", 7), ("decoder.0.0.weight", 4)):
        old, new = state["best_model"][name], new_state["best_model"][name]
        assert torch.equal(new[:, :column], old)  # the known categories' columns as they were
        torch.testing.assert_close(new[:, column], old[:, column - 2 : column].mean(dim=1))  # the average batch
    module = build_module(wide, new_state["best_model"])  # the weights fit the widened model
    moments = new_state["optimizer"]["state"]
    index = [name for name, _ in module.named_parameters()].index("encoder.0.weight")
    assert moments[index]["exp_avg"].shape == (8, 8) and not moments[index]["exp_avg"][:, 7].any()
    for key in ("landmarks", "reservoir"):
        rows = new_state[key]["rows"]
        assert rows.shape[1] == 5 + 3 and not rows[:, -1].any()  # no stored row is of the new batch
        assert torch.equal(rows[:, :-1], state[key]["rows"])
