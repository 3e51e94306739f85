"""Parameter checks (cvae._validation): wherever a parameter is used, a wrong one is a clear error."""

import json
import os

import numpy as np
import pytest

from cvae import CompressionVAE


def test_invalid_parameters_set_after_fit_are_errors(run, X):
    vae, logdir = run
    vae.set_params(eval_batch_size=-1)
    for call in (lambda: vae.transform(X), lambda: vae.score_samples(X),
                 lambda: vae.inverse_transform(np.zeros((2, 2))), lambda: vae.sample(2)):
        with pytest.raises(ValueError, match="eval_batch_size"):
            call()
    path = logdir / "params.json"
    document = json.loads(path.read_text())
    document["params"]["eval_batch_size"] = -5
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"Cannot read .*params.json: .*eval_batch_size"):
        CompressionVAE.load(logdir)


@pytest.mark.parametrize("schedule, consequence", [("adaptive", "would stop"), ("cosine", "would raise")])
def test_learning_rate_below_its_minimum_is_refused(X, fast, schedule, consequence):
    with pytest.raises(ValueError, match=f"learning_rate_init=1e-06 is below learning_rate_min=1e-05: .*{consequence}"):
        CompressionVAE(**dict(fast, learning_rate=schedule, learning_rate_init=1e-6)).fit(X)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_components=True), "n_components must be a number, not a bool"),
        (dict(hidden_layer_sizes=(float("nan"),)), "hidden_layer_sizes must be a non-empty sequence"),
        (dict(hidden_layer_sizes=("a",)), "hidden_layer_sizes must be a non-empty sequence"),
        (dict(device="meta"), "runs on 'cpu', 'cuda' or 'mps'"),
        (dict(device="nonsense"), "device='nonsense' is not a device"),
    ],
)
def test_parameters_of_the_wrong_kind_are_clear_errors(X, fast, params, message):
    with pytest.raises(ValueError, match=message):
        CompressionVAE(**dict(fast, **params)).fit(X)


@pytest.mark.parametrize("name", ["n_jobs", "beta", "patience", "n_neighbors", "max_steps", "reconstruction_fraction"])
def test_a_bool_for_a_number_is_refused(name, X, fast):
    with pytest.raises(ValueError, match=f"{name} must be a number, not a bool"):
        CompressionVAE(**dict(fast, **{name: True})).fit(X[:100])


def test_n_jobs_beyond_the_cpus_is_refused_before_training(X, fast):
    cpus = os.cpu_count()
    with pytest.raises(ValueError, match=f"n_jobs={cpus + 1} asks for more CPU threads than this machine's {cpus}"):
        CompressionVAE(**dict(fast, n_jobs=cpus + 1)).fit(X[:100])
