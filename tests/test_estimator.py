"""Behaviour of CompressionVAE as an estimator: fitting, parameters, reproducibility, scheduling, precision."""

import pickle
import shutil
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

from cvae import CompressionVAE
from cvae.data.rows import TensorChunks
from cvae.training.io import load_checkpoint
from cvae.training.trainer import cpp_compiler_found, evaluate


def fit(X, X_valid=None, **params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return CompressionVAE(**params).fit(X, X_valid=X_valid)


def test_fit_transform_shapes_and_what_each_method_gives(X, fast):
    vae = fit(X, n_components=3, **dict(fast, max_steps=300))
    Z = vae.transform(X)
    assert Z.shape == (400, 3) and np.isfinite(Z).all()
    # a row's own code decodes closer to it than other rows' codes do
    X_hat, other = vae.inverse_transform(Z), vae.inverse_transform(np.roll(Z, 1, axis=0))
    assert X_hat.shape == (400, 64) and np.square(X_hat - X).mean() < 0.5 * np.square(other - X).mean()
    samples = vae.sample(500, random_state=0)
    assert samples.shape == (500, 64)
    np.testing.assert_array_equal(samples, vae.sample(500, random_state=0))  # seeded draws repeat
    assert np.abs(samples.mean() - X.mean()) < 0.25 * X.std()  # drawn around the data's level
    scores = vae.score_samples(X)
    assert scores.shape == (400,) and vae.score(X) == pytest.approx(scores.mean(), rel=1e-5)
    assert vae.score(X) > vae.score(np.random.default_rng(0).permutation(X.ravel()).reshape(X.shape))
    assert list(vae.get_feature_names_out()) == ["compressionvae0", "compressionvae1", "compressionvae2"]
    assert vae.n_features_in_ == 64 and vae.hidden_layer_sizes_ == [32, 16]
    assert vae.device_ == torch.device("cpu")


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_, np.float16])
def test_integer_bool_and_half_inputs_are_accepted_as_float32(X, fast, dtype):
    vae = fit(X.astype(dtype), **fast)
    assert vae.transform(X.astype(dtype)).dtype == np.float32


def test_lists_are_accepted(X, fast):
    vae = fit(X.tolist(), **fast)
    assert np.array_equal(vae.transform(X[:5].tolist()), vae.transform(X[:5]))


def test_same_random_state_gives_bit_identical_model(X, fast):
    a, b = fit(X, iaf_flow_length=1, dropout=0.2, **fast), fit(X, iaf_flow_length=1, dropout=0.2, **fast)
    assert np.array_equal(a.transform(X), b.transform(X))
    assert a.history_ == [dict(r, elapsed_seconds=a_r["elapsed_seconds"]) for r, a_r in zip(b.history_, a.history_)]
    c = fit(X, **dict(fast, random_state=1))
    assert not np.array_equal(a.transform(X), c.transform(X))


def test_fit_leaves_global_random_state_alone(X, fast):
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    fit(X, **fast)
    assert torch.equal(torch.rand(3), expected_torch)
    assert np.array_equal(np.random.rand(3), expected_np)


def test_history_records_each_validation(X, fast):
    vae = fit(X, **fast)
    assert [row["step"] for row in vae.history_] == [20, 40, 60]
    assert set(vae.history_[0]) == {
        "step", "train_loss", "validation_loss", "validation_log_likelihood", "validation_kl", "validation_elbo",
        "learning_rate", "elapsed_seconds",
    }
    assert vae.best_validation_loss_ == min(row["validation_loss"] for row in vae.history_)
    assert vae.n_steps_ == 60 and vae.stop_reason_ == "max_steps"


def test_learning_rate_plateaus_divide_the_rate_and_end_training(X, fast):
    # tol larger than any improvement makes every validation a plateau.
    vae = CompressionVAE(**dict(fast, max_steps=10_000, validation_interval=5), patience=1, tol=1e6,
                         learning_rate="adaptive", learning_rate_init=1e-2, learning_rate_factor=10,
                         learning_rate_min=1e-4).fit(X)
    rates = [row["learning_rate"] for row in vae.history_]
    assert vae.stop_reason_ == "converged"
    assert rates[0] == pytest.approx(1e-2)
    assert sorted(set(rates), reverse=True) == pytest.approx([1e-2, 1e-3, 1e-4])
    assert vae.n_steps_ < 100


def test_constant_learning_rate_trains_for_max_steps(X, fast):
    vae = fit(X, **dict(fast, validation_interval=5), learning_rate="constant", patience=0, tol=1e6,
              learning_rate_init=2e-3, learning_rate_min=1e-2)
    assert vae.stop_reason_ == "max_steps" and vae.n_steps_ == 60
    assert {row["learning_rate"] for row in vae.history_} == {2e-3}


def test_best_validation_weights_are_restored(digits, fast):
    # 60 training rows overfit: the validation loss is lowest early and far higher at the end.
    X = digits[0]
    vae = fit(X[:60], X_valid=X[1000:1300],
              **dict(fast, max_steps=400, learning_rate="constant", learning_rate_init=1e-2, neighbor_weight=0))
    assert vae.history_[-1]["validation_loss"] > vae.best_validation_loss_ + 10
    assert vae.best_validation_loss_ == min(row["validation_loss"] for row in vae.history_)
    chunks = TensorChunks(torch.from_numpy(X[1000:1300].astype(np.float32)), 4096)
    assert evaluate(vae.module_, chunks)["loss"] == pytest.approx(vae.best_validation_loss_, rel=1e-6)


def test_early_stopping_ends_an_overfitting_fit_with_the_best_weights(digits, fast):
    X = digits[0]
    vae = fit(X[:60], X_valid=X[1000:1300],
              **dict(fast, max_steps=4000, learning_rate="constant", learning_rate_init=1e-2, n_iter_no_change=3,
                     neighbor_weight=0))
    losses = [row["validation_loss"] for row in vae.history_]
    best = losses.index(min(losses))
    assert vae.stop_reason_ == "no_improvement" and len(losses) == best + 1 + 3  # three stale validations
    assert vae.n_steps_ < 4000 and vae.best_validation_loss_ == losses[best]
    chunks = TensorChunks(torch.from_numpy(X[1000:1300].astype(np.float32)), 4096)
    assert evaluate(vae.module_, chunks)["loss"] == pytest.approx(vae.best_validation_loss_, rel=1e-6)


def test_max_steps_without_convergence_warns(X, fast):
    with pytest.warns(ConvergenceWarning, match="max_steps=60"):
        CompressionVAE(**fast, learning_rate="adaptive").fit(X)


def test_kl_warmup_changes_training_and_history_reports_the_true_elbo(X, fast):
    plain = fit(X, **fast)
    warm = fit(X, kl_warmup_steps=1000, **fast)
    assert not np.array_equal(plain.transform(X), warm.transform(X))
    warm = fit(X, kl_warmup_steps=1000, neighbor_weight=0, **fast)  # a loss of the ELBO alone
    row = warm.history_[-1]  # validation always uses the full beta
    assert row["validation_loss"] == pytest.approx(row["validation_kl"] - row["validation_log_likelihood"])


@pytest.mark.parametrize("normalize", ["global", "feature", "none"])
def test_constant_features_give_finite_loss_and_embeddings(fast, normalize):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10)).astype(np.float32)
    X[:, :4] = 0.0  # MNIST-border-like constant columns
    vae = fit(X, normalize=normalize, **dict(fast, max_steps=200))
    assert np.isfinite(vae.transform(X)).all()
    assert all(np.isfinite(row["validation_loss"]) for row in vae.history_)
    assert np.isfinite(vae.score_samples(X)).all()


def test_bernoulli_likelihood_on_unit_interval_data(digits, fast):
    X = digits[0][:400] / 16.0
    vae = fit(X, likelihood="bernoulli", **fast)
    recon = vae.inverse_transform(vae.transform(X))
    assert recon.min() >= 0 and recon.max() <= 1
    with pytest.raises(ValueError, match=r"needs X in \[0, 1\].*range from 0 to 16"):
        CompressionVAE(likelihood="bernoulli", **fast).fit(digits[0][:400])


def test_iaf_model_fits_and_scores(X, fast):
    vae = fit(X, iaf_flow_length=3, **fast)
    assert vae.module_.flow.n_steps == 3
    assert np.isfinite(vae.score_samples(X)).all()


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_components": 0}, "'n_components' parameter"),
        ({"likelihood": "multinomial"}, "'likelihood' parameter"),
        ({"neighbor_objective": "pacmap"}, "'neighbor_objective' parameter"),
        ({"initializer": "zeros"}, "'initializer' parameter"),
        ({"validation_fraction": 1.0}, "'validation_fraction' parameter"),
        ({"dropout": 1.0}, "'dropout' parameter"),
        ({"normalize": True}, "'normalize' parameter"),
        ({"batch_size": -1}, "'batch_size' parameter"),
        ({"learning_rate_factor": 1.0}, "'learning_rate_factor' parameter"),
        ({"reconstruction_fraction": 0.0}, "'reconstruction_fraction' parameter"),
        ({"reconstruction_fraction": 1.5}, "'reconstruction_fraction' parameter"),
        ({"reconstruction_fraction": "half"}, "'reconstruction_fraction' parameter"),
    ],
)
def test_invalid_parameters_are_rejected_at_fit(X, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        CompressionVAE(**params).fit(X)


@pytest.mark.parametrize("sizes", [(), (16, 0), (8.5,)])
def test_invalid_hidden_layer_sizes_are_rejected(X, sizes):
    with pytest.raises(ValueError, match="hidden_layer_sizes"):
        CompressionVAE(hidden_layer_sizes=sizes).fit(X)


def test_unfitted_estimator_raises_not_fitted(X):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CompressionVAE().transform(X)


def test_wrong_number_of_features_and_latent_dimensions(X, fast):
    vae = fit(X, **fast)
    with pytest.raises(ValueError, match="X has 10 features, but CompressionVAE is expecting 64"):
        vae.transform(X[:, :10])
    with pytest.raises(ValueError, match="Z has 3 columns, but this CompressionVAE has n_components=2"):
        vae.inverse_transform(np.zeros((4, 3)))


def test_nan_inputs_are_rejected(X, fast):
    vae = fit(X, **fast)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        CompressionVAE(**fast).fit(bad)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        vae.transform(bad)
    with pytest.raises(ValueError, match="Input Z contains infinity"):
        vae.inverse_transform(np.array([[np.inf, 0.0]]))


def test_pickle_and_joblib_round_trips_transform_identically(X, fast, tmp_path):
    vae = fit(X, iaf_flow_length=1, **fast)
    Z = vae.transform(X)
    assert np.array_equal(pickle.loads(pickle.dumps(vae)).transform(X), Z)
    joblib.dump(vae, tmp_path / "vae.joblib")
    restored = joblib.load(tmp_path / "vae.joblib")
    assert np.array_equal(restored.transform(X), Z)
    assert restored.score(X) == vae.score(X)


def test_clone_gives_unfitted_copy_with_same_params(X, fast):
    vae = fit(X, **fast)
    copy = clone(vae)
    assert copy.get_params() == vae.get_params()
    assert not hasattr(copy, "module_")


def test_warm_start_in_memory_continues_the_run(X, fast):
    vae = fit(X, **fast)
    vae.set_params(warm_start=True, max_steps=100, learning_rate="constant")
    fit_again = vae.fit(X)
    assert fit_again.n_steps_ == 100
    assert [row["step"] for row in vae.history_] == [20, 40, 60, 80, 100]


def test_interrupted_and_resumed_fit_matches_an_uninterrupted_one(X, fast):
    # a schedule that is not a function of max_steps, so that the budget can be raised
    fast = dict(fast, learning_rate="adaptive")
    whole = fit(X, **dict(fast, max_steps=100))
    part = fit(X, **dict(fast, max_steps=40))
    resumed = part.set_params(warm_start=True, max_steps=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        resumed.fit(X)
    assert resumed.n_steps_ == 100
    assert np.array_equal(resumed.transform(X), whole.transform(X))


def test_device_auto_resolves_and_unavailable_cuda_is_a_clear_error(X, fast):
    mps = getattr(torch.backends, "mps", None)
    expected = "cuda" if torch.cuda.is_available() else "mps" if mps is not None and mps.is_available() else "cpu"
    assert fit(X, device="auto", **fast).device_.type == expected
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            CompressionVAE(device="cuda", **fast).fit(X)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_fit_matches_cpu_inference(X, fast):
    vae = fit(X, device="cuda", **fast)
    assert vae.device_.type == "cuda"
    Z = vae.transform(X)
    cpu = pickle.loads(pickle.dumps(vae.set_params(device="cpu")))
    np.testing.assert_allclose(cpu.transform(X), Z, rtol=1e-4, atol=1e-4)


def test_free_bits_keep_latent_dimensions_in_use(digits, fast):
    from cvae.metrics import active_units

    X = digits[0]
    params = dict(fast, n_components=16, max_steps=300, learning_rate="constant", neighbor_weight=0)
    plain, floored = fit(X, **params), fit(X, **dict(params, free_bits=1.0))
    assert floored.history_[-1]["validation_kl"] > plain.history_[-1]["validation_kl"]
    assert active_units(floored.transform(X)) >= active_units(plain.transform(X))


@pytest.mark.parametrize("objective, loss_name", [("umap", "neighbor_loss"), ("tsne", "contrastive_neighbor_loss")])
def test_neighbor_weight_adds_the_neighbor_loss_to_training_and_validation(digits, fast, monkeypatch, tmp_path,
                                                                           objective, loss_name):
    import cvae.nn.neighbor_loss

    loss = getattr(cvae.nn.neighbor_loss, loss_name)
    calls = []

    def spy(embedding, neighbor_embedding, weights=None, generator=None):
        calls.append(neighbor_embedding.shape)
        return loss(embedding, neighbor_embedding, weights=weights, generator=generator)

    monkeypatch.setitem(cvae.nn.neighbor_loss.NEIGHBOR_OBJECTIVES, objective, spy)
    X = digits[0][:500]
    vae = fit(X, **dict(fast, neighbor_weight=0.5, n_neighbors=5, neighbor_samples=3, neighbor_objective=objective))
    assert vae.n_steps_ == 60 and len(calls) == 60 + len(vae.history_)  # each step, and each validation
    # a training step pairs each of its 64 rows with neighbor_samples=3 neighbours
    assert {shape[1] for shape in calls} == {2} and max(shape[0] for shape in calls) == 3 * 64
    assert fit(X, **fast).transform(X[:5]).tolist() != vae.transform(X[:5]).tolist()


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_multiplies_in_16_bits_and_keeps_float32_state(X, fast, precision, monkeypatch):
    product_dtypes = set()
    original = torch.nn.Linear.forward

    def record(self, x):
        out = original(self, x)
        if torch.is_grad_enabled():  # training steps, not validation
            product_dtypes.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", record)
    reference = fit(X, iaf_flow_length=2, **fast)
    assert product_dtypes == {torch.float32}
    product_dtypes.clear()
    vae = fit(X, iaf_flow_length=2, precision=precision, **fast)
    assert product_dtypes == {getattr(torch, precision)}

    assert all(p.dtype == torch.float32 for p in vae.module_.parameters())
    assert vae.transform(X).dtype == np.float32 and np.isfinite(vae.score_samples(X)).all()
    losses = np.array([row["validation_loss"] for row in vae.history_])
    expected = np.array([row["validation_loss"] for row in reference.history_])
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(losses, expected, rtol=0.02)  # the same training, up to rounding
    again = fit(X, iaf_flow_length=2, precision=precision, **fast)
    np.testing.assert_array_equal(again.transform(X), vae.transform(X))


@pytest.mark.skipif(not cpp_compiler_found(), reason="torch.compile needs a C++ compiler")
def test_compile_trains_through_torch_compile_reproducibly(X, fast, monkeypatch):
    compiled = []
    original = torch.compile

    def record(model, **kwargs):
        compiled.append(model)
        return original(model, **kwargs)

    monkeypatch.setattr(torch, "compile", record)
    reference = fit(X, iaf_flow_length=2, **fast)
    assert compiled == []
    vae = fit(X, iaf_flow_length=2, compile=True, **fast)
    assert [type(model) for model in compiled] == [type(vae.module_)]  # the training pass, once
    losses = np.array([row["validation_loss"] for row in vae.history_])
    expected = np.array([row["validation_loss"] for row in reference.history_])
    # The compiled pass draws its noise from the fit's generator, as the eager one does:
    # the same training, up to the rounding of fused kernels.
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    np.testing.assert_allclose(vae.transform(X), reference.transform(X), atol=1e-4)
    again = fit(X, iaf_flow_length=2, compile=True, **fast)
    np.testing.assert_array_equal(again.transform(X), vae.transform(X))
    assert np.isfinite(pickle.loads(pickle.dumps(vae)).transform(X)).all()


def test_compile_without_a_cpp_compiler_says_so_before_training(X, fast, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(RuntimeError, match="compile=True needs a C\\+\\+ compiler .* or set compile=False"):
        fit(X, compile=True, device="cpu", **fast)


def test_float16_scales_the_loss_and_resumes_with_the_saved_scale(X, fast, tmp_path):
    params = dict(fast, precision="float16", logdir=str(tmp_path / "run"))
    fit(X, **params)
    path = tmp_path / "run" / "checkpoint.pt"
    checkpoint = load_checkpoint(path)
    assert checkpoint["grad_scaler"]["scale"] > 1
    checkpoint["grad_scaler"]["scale"] = 1024.0  # a scale the run could not have reached by itself
    torch.save(checkpoint, path)
    resumed = fit(X, **dict(params, warm_start=True, max_steps=fast["max_steps"] + 20))
    assert resumed.n_steps_ == fast["max_steps"] + 20 and np.isfinite(resumed.transform(X)).all()
    # 20 steps without an overflow neither grow (every 2000) nor halve the loaded scale
    assert load_checkpoint(path)["grad_scaler"]["scale"] == 1024.0


def test_a_fraction_of_each_batch_reconstructed_trains_reproducibly(X, fast):
    params = dict(fast, reconstruction_fraction=0.25)
    a, b, whole = fit(X, **params), fit(X, **params), fit(X, **fast)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert not np.array_equal(a.transform(X), whole.transform(X))
    # validation scores every row: the ELBO it reports is comparable with the whole batch's
    assert abs(a.history_[-1]["validation_elbo"] - whole.history_[-1]["validation_elbo"]) < 0.2 * abs(
        whole.history_[-1]["validation_elbo"])
