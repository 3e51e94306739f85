"""What a fitted model does with rows (cvae.inference): embed, decode, score and sample, in
the data's scale and precision, repeatably."""

import warnings

import numpy as np
import pytest

from cvae import CompressionVAE

# Short fits, which warn that they stopped at max_steps.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_keep_float_input_precision(X, fast, dtype):
    vae = CompressionVAE(**fast).fit(X)
    assert vae.transform(X.astype(dtype)).dtype == dtype
    assert vae.inverse_transform(np.zeros((2, 2), dtype)).dtype == dtype


def test_transform_is_deterministic_and_batch_independent(X, fast):
    vae = CompressionVAE(eval_batch_size=7, iaf_flow_length=2, **fast).fit(X)
    Z = vae.transform(X)
    assert np.array_equal(Z, vae.transform(X))
    np.testing.assert_allclose(Z[:7], vae.set_params(eval_batch_size=1000).transform(X[:7]), rtol=1e-5, atol=1e-6)


def test_inverse_transform_returns_original_scale(X, fast):
    big = X * 1000 + 5000
    vae = CompressionVAE(**dict(fast, max_steps=200)).fit(big)
    recon = vae.inverse_transform(vae.transform(big))
    assert abs(recon.mean() - big.mean()) < 0.1 * big.std()
    assert np.mean((recon - big) ** 2) < big.var()  # better than predicting the mean


@pytest.mark.parametrize("normalize", ["global", "feature"])
def test_elbo_is_in_original_data_scale(X, fast, normalize):
    # Normalization absorbs a rescaling by 4 (a power of two, so exact in floating point):
    # the same network results and the density changes by the Jacobian, -log 4 per
    # rescaled feature ("feature" leaves constant features at scale 1).
    a = CompressionVAE(normalize=normalize, **fast).fit(X)
    b = CompressionVAE(normalize=normalize, **fast).fit(X * 4)
    n_rescaled = int(np.sum(b.scale_ != a.scale_))
    assert n_rescaled == (64 if normalize == "global" else int(np.sum(X.std(0) > 0)))
    np.testing.assert_allclose(b.score_samples(X * 4), a.score_samples(X) - n_rescaled * np.log(4), rtol=1e-5)


@pytest.mark.parametrize("flows", [0, 2])
def test_score_samples_are_repeatable_and_independent_of_other_rows(X, fast, flows):
    vae = CompressionVAE(iaf_flow_length=flows, **fast).fit(X)
    s = vae.score_samples(X)
    assert np.array_equal(s, vae.score_samples(X))
    assert vae.score(X) == pytest.approx(s.mean())
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(vae.score_samples(X[order]), s[order], rtol=1e-5)
    np.testing.assert_allclose(vae.set_params(eval_batch_size=7).score_samples(X[:20]), s[:20], rtol=1e-5)


def test_read_only_memmap_input_is_accepted_without_warnings(X, fast, tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, X)
    X_ro = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vae = CompressionVAE(**dict(fast, max_steps=20, validation_interval=20), learning_rate="constant").fit(X_ro)
        np.testing.assert_array_equal(vae.transform(X_ro), vae.transform(X))


def test_score_improves_with_training(X, fast):
    short = CompressionVAE(**dict(fast, max_steps=5)).fit(X)
    longer = CompressionVAE(**dict(fast, max_steps=300)).fit(X)
    assert longer.score(X) > short.score(X) + 10


def test_sample_is_reproducible_and_decodes_prior_draws(X, fast):
    vae = CompressionVAE(**fast).fit(X)
    np.testing.assert_array_equal(vae.sample(4, random_state=3), vae.sample(4, random_state=3))
    assert not np.array_equal(vae.sample(4, random_state=3), vae.sample(4, random_state=4))
    for bad in (0, True, 2.0):  # a bool or a float is not a count of samples
        with pytest.raises(ValueError, match=f"n_samples must be a positive integer, got {bad!r}"):
            vae.sample(bad)


def test_importance_weighted_scores_tighten_the_elbo(digits, fast):
    X = digits[0][:400]
    vae = CompressionVAE(**dict(fast, max_steps=200)).fit(X)
    elbo = vae.score_samples(X)
    iwae = {k: vae.score_samples(X, n_importance_samples=k) for k in (16, 256)}
    assert iwae[256].shape == (400,) and np.isfinite(iwae[256]).all()
    assert elbo.mean() < iwae[16].mean() < iwae[256].mean()
    np.testing.assert_array_equal(vae.score_samples(X, n_importance_samples=16), iwae[16])  # fixed noise
    vae.set_params(eval_batch_size=7)  # other batches, other passes: the same bound per row
    np.testing.assert_allclose(vae.score_samples(X, n_importance_samples=16), iwae[16], rtol=1e-5)
    with pytest.raises(ValueError, match="n_importance_samples must be a positive integer, got 0"):
        vae.score_samples(X, n_importance_samples=0)


def test_a_parameter_set_after_the_fit_does_not_change_the_fitted_model(X, fast):
    from cvae import CompressionVAE

    vae = CompressionVAE(**fast).fit(X)
    Z = vae.transform(X[:5])
    vae.set_params(n_components=3)
    assert vae.inverse_transform(Z).shape == (5, 64)  # codes of the fitted width
    assert vae.sample(4, random_state=0).shape == (4, 64)
    assert vae.score_samples(X[:5]).shape == (5,)
    assert vae.get_feature_names_out().tolist() == ["compressionvae0", "compressionvae1"]
