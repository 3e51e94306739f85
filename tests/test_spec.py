"""The run specification: what it accepts, what it refuses, and that it rebuilds the model."""

import json
import pickle

import numpy as np
import pytest
import torch

from cvae import CompressionVAE
from cvae.spec import FORMAT_VERSION, ModelSpec, RunSpec, build_module, check_warm_start
from cvae.training import LogDir


@pytest.fixture
def spec():
    model = ModelSpec(n_features=3, n_latent=2, hidden_sizes=[8, 4], likelihood="gaussian", n_flows=1)
    return RunSpec(model, "global", loc=[0.0, 1.0, 2.0], scale=[1.0, 1.0, 2.0], seed=7, feature_names=["a", "b", "c"])


def test_round_trip_through_json(spec):
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["format_version"] == FORMAT_VERSION
    again = RunSpec.from_dict(data)
    assert again == spec and again.model == spec.model
    assert again.loc.dtype == np.float32 and again.feature_names == ("a", "b", "c")


def test_covariates_round_trip_and_widen_the_model(spec):
    from dataclasses import replace

    from cvae.data.covariates import CovariateSpec, covariate_table

    covariates = CovariateSpec.fit(covariate_table(np.array(["x", "y", "z"])))
    conditioned = replace(spec, covariates=covariates, model=replace(spec.model, n_covariates=3))
    assert "covariates" not in spec.to_dict() and "n_covariates" not in spec.to_dict()["model"]  # files as before
    again = RunSpec.from_dict(json.loads(json.dumps(conditioned.to_dict())))
    assert again == conditioned and again.covariates == covariates and again.n_inputs == 6
    module = build_module(conditioned)
    assert module.encoder[0].in_features == 3 + 3 and module.decoder[0][0].in_features == 2 + 3


def test_classes_round_trip_and_give_the_model_a_classifier(spec):
    from dataclasses import replace

    labelled = replace(spec, model=replace(spec.model, n_classes=4))
    assert "n_classes" not in spec.to_dict()["model"]  # files as before
    again = RunSpec.from_dict(json.loads(json.dumps(labelled.to_dict())))
    assert again == labelled and again.model.n_classes == 4
    assert build_module(again).classifier[-1].out_features == 4 and build_module(spec).classifier is None


def test_build_module_follows_the_spec_and_loads_weights(spec):
    torch.manual_seed(0)
    module = build_module(spec)
    assert module.n_latent == 2 and module.flow is not None
    assert [layer.out_features for layer in module.encoder.modules() if isinstance(layer, torch.nn.Linear)] == [8, 4]
    torch.testing.assert_close(module.likelihood.loc, torch.tensor([0.0, 1.0, 2.0]))
    rng = torch.get_rng_state()
    copy = build_module(spec, module.state_dict())
    assert torch.equal(torch.get_rng_state(), rng)  # loading weights draws nothing from the caller's generator
    for name, value in module.state_dict().items():
        assert torch.equal(copy.state_dict()[name], value)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("seed"), "lacks seed"),
        (lambda d: d["model"].pop("n_latent"), "lacks model.n_latent"),
        (lambda d: d.update(colour="red"), "unknown fields colour"),
        (lambda d: d["model"].update(n_latent=0), "n_latent=0"),
        (lambda d: d["model"].update(n_latent=True), "n_latent=True"),
        (lambda d: d["model"].update(n_latent="2"), "n_latent='2'"),
        (lambda d: d["model"].update(hidden_sizes=[8, -1]), "hidden_sizes"),
        (lambda d: d["model"].update(hidden_sizes=8), "hidden_sizes must be a list"),
        (lambda d: d["model"].update(likelihood="poisson2"), "likelihood='poisson2'"),
        (lambda d: d["model"].update(dropout=1.0), "dropout=1.0"),
        (lambda d: d.update(scale=[1.0, 0.0, 1.0]), "scale.*finite positive"),
        (lambda d: d.update(loc=[0.0, 1.0]), "loc.*3 finite numbers"),
        (lambda d: d.update(loc=[0.0, "x", 1.0]), "loc must be a list of numbers"),
        (lambda d: d.update(normalize="zscore"), "normalize='zscore'"),
        (lambda d: d.update(feature_names=["a"]), "feature_names"),
        (lambda d: d.update(format_version=99), "format_version=99"),
        (lambda d: d.update(seed=-1), "seed=-1"),
        (lambda d: d.update(model=[]), "no 'model' object"),
        (lambda d: d["model"].update(n_covariates=2), "covariates=None.*2 encoded columns"),
        (lambda d: d["model"].update(n_classes=1), "n_classes=1.*at least 2 classes"),
        (lambda d: d["model"].update(n_classes=-2), "n_classes=-2"),
        (lambda d: d.update(covariates=[{"name": "b", "kind": "categorical", "categories": ["x"]}]),
         "covariates=.*0 encoded columns"),
    ],
)
def test_from_dict_names_what_is_wrong(spec, change, message):
    data = spec.to_dict()
    change(data)
    with pytest.raises(ValueError, match=message):
        RunSpec.from_dict(data)


def test_nan_in_the_statistics_is_refused(spec):
    data = spec.to_dict()
    data["loc"][0] = float("nan")
    with pytest.raises(ValueError, match="loc"):
        RunSpec.from_dict(data)


def test_warm_start_accepts_the_runs_architecture_and_refuses_another(spec):
    params = dict(n_components=2, hidden_layer_sizes=(8, 4), iaf_flow_length=1, likelihood="auto",
                  activation="relu", dropout=0.0, initializer="orthogonal", normalize=spec.normalize,
                  random_state=None)
    check_warm_start(params, spec)
    check_warm_start(dict(params, hidden_layer_sizes=None), spec)
    with pytest.raises(ValueError, match="whose n_components is 2, but n_components=5 was given"):
        check_warm_start(dict(params, n_components=5), spec)
    with pytest.raises(ValueError, match="whose hidden_layer_sizes is \\[8, 4\\]"):
        check_warm_start(dict(params, hidden_layer_sizes=(16,)), spec)
    with pytest.raises(ValueError, match="has no classifier .*classifier_weight=1.0 was given.*to 0"):
        check_warm_start(dict(params, classifier_weight=1.0), spec)
    from dataclasses import replace

    labelled = replace(spec, model=replace(spec.model, n_classes=3))
    check_warm_start(dict(params, classifier_weight=3.0), labelled)  # another weight: a setting of the training
    with pytest.raises(ValueError, match="has a classifier, but classifier_weight=0.0 was given.*above 0"):
        check_warm_start(dict(params, classifier_weight=0.0), labelled)


def test_fitted_estimator_keeps_its_spec_through_pickle_and_load(digits, fast, tmp_path):
    X = digits[0][:300]
    vae = CompressionVAE(**dict(fast, logdir=str(tmp_path / "run"), max_steps=20, learning_rate="constant")).fit(X)
    assert vae.spec_.model.hidden_sizes == (32, 16) and vae.spec_.model.likelihood == vae.likelihood_
    assert pickle.loads(pickle.dumps(vae)).spec_ == vae.spec_
    assert CompressionVAE.load(tmp_path / "run").spec_ == vae.spec_
    assert LogDir(tmp_path / "run").read_params()[1] == vae.spec_


def test_a_broken_params_file_is_named_in_the_error(digits, fast, tmp_path):
    X = digits[0][:300]
    CompressionVAE(**dict(fast, logdir=str(tmp_path / "run"), max_steps=20, learning_rate="constant")).fit(X)
    path = tmp_path / "run" / "params.json"
    document = json.loads(path.read_text())
    document["spec"]["model"]["n_latent"] = "two"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"Cannot read .*params.json: invalid ModelSpec field n_latent='two'"):
        CompressionVAE.load(tmp_path / "run")
    del document["spec"]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"params.json: the run specification must be a JSON object"):
        CompressionVAE.load(tmp_path / "run")
    path.write_text(json.dumps(dict(document, format_version=FORMAT_VERSION + 1)))
    with pytest.raises(ValueError, match=r"params.json: it has format_version 3.*a newer cvae wrote it"):
        CompressionVAE.load(tmp_path / "run")


@pytest.mark.parametrize("change, message", [
    (dict(normalize="feature"), "whose normalize is 'global', but normalize='feature'"),
    (dict(random_state=1), "seed came from another random_state"),
])
def test_a_warm_start_refuses_another_normalization_or_seed(X, fast, tmp_path, change, message):
    from cvae import CompressionVAE

    vae = CompressionVAE(**dict(fast, max_steps=20, logdir=str(tmp_path / "run"))).fit(X)
    for attempt in (lambda: vae.set_params(warm_start=True, **change).fit(X),  # in memory
                    lambda: vae.set_params(warm_start=False, **change).partial_fit(X),
                    lambda: CompressionVAE(**dict(fast, logdir=str(tmp_path / "run"), warm_start=True,
                                                  **change)).fit(X)):  # from the logdir
        with pytest.raises(ValueError, match=message):
            attempt()
        vae.set_params(normalize="global", random_state=0)


def test_warm_start_refuses_another_architecture(run, X):
    vae, _ = run
    for change in (dict(n_components=3), dict(hidden_layer_sizes=(8,)), dict(likelihood="bernoulli"),
                   dict(iaf_flow_length=2), dict(activation="tanh"), dict(dropout=0.5)):
        with pytest.raises(ValueError, match="warm_start=True continues the saved model"):
            CompressionVAE.load(run[1]).set_params(warm_start=True, **change).fit(X)
    vae.set_params(warm_start=True, n_components=7)
    with pytest.raises(ValueError, match="whose n_components is 2"):
        vae.fit(X)
