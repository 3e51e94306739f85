"""Preparing a fit's data (cvae.data.preparation): the split, the checked statistics pass, the
likelihood "auto" picks, validation rows and replayed rows."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from cvae import CompressionVAE
from cvae.data.preparation import REPLAY_MIN_ROWS, with_replay

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def test_validation_data_is_used_and_checked(X, fast):
    vae = CompressionVAE(**fast).fit(X[:300], X_valid=X[300:])
    other = CompressionVAE(**fast).fit(X[:300], X_valid=X[300:350])
    assert len(vae.history_) == 3
    # the same training trajectory (all 300 rows train), validated on other rows
    assert [r["train_loss"] for r in vae.history_] == [r["train_loss"] for r in other.history_]
    assert [r["validation_loss"] for r in vae.history_] != [r["validation_loss"] for r in other.history_]
    with pytest.raises(ValueError, match="X_valid has 10 features, but X has 64"):
        CompressionVAE(**fast).fit(X, X_valid=X[:, :10])


def test_too_few_samples_for_a_validation_split_is_a_clear_error(fast):
    with pytest.raises(ValueError, match="validation_fraction=0.1 of 1 samples"):
        CompressionVAE(**fast).fit(np.random.rand(1, 4))
    assert CompressionVAE(**fast).fit(np.random.rand(3, 4)).n_features_in_ == 4  # one row is held out


def test_auto_likelihood_is_bernoulli_exactly_for_unit_interval_data(digits, fast):
    X = digits[0][:400]
    assert CompressionVAE(likelihood="auto", **fast).fit(X / 16.0).likelihood_ == "bernoulli"
    assert CompressionVAE(likelihood="auto", **fast).fit(X).likelihood_ == "gaussian"
    assert CompressionVAE(likelihood="gaussian", **fast).fit(X / 16.0).likelihood_ == "gaussian"
    # the held-out part counts too: one value above 1 anywhere means Gaussian
    X_valid = X[:50] / 16.0
    X_valid[0, 0] = 1.5
    assert CompressionVAE(likelihood="auto", **fast).fit(X / 16.0, X_valid=X_valid).likelihood_ == "gaussian"


def test_replayed_rows_join_x_in_memory_of_their_width_and_nothing_else(tmp_path):
    X, rows = np.ones((3, 4)), np.zeros((2, 4))
    stacked, y, weights, _ = with_replay(X, [0, 1, 2], [2.0, 2.0, 2.0], rows, (0, 0))
    np.testing.assert_array_equal(stacked, np.vstack([X, rows]))
    assert y.tolist() == [0, 1, 2, -1, -1] and weights.tolist() == [2, 2, 2, 2, 2]  # replayed: the mean weight
    stacked, y, _, _ = with_replay(sp.csr_matrix(X), np.array(["a", "b", "c"]), None, rows, (0, 0))
    assert sp.issparse(stacked) and stacked.shape == (5, 4) and y.tolist() == ["a", "b", "c", None, None]
    path = tmp_path / "x.npy"
    for other in (np.ones((3, 5)), str(path), np.ones(4)):  # another width, a file, a vector: as they are
        assert with_replay(other, None, None, rows, (0, 0))[0] is other
    assert with_replay(X, None, None, None, (0, 0))[0] is X


@pytest.mark.parametrize("n_new", [10, REPLAY_MIN_ROWS + 500])
def test_replay_draws_as_many_distinct_stored_rows_as_x_has_at_least_the_floor(n_new):
    stored = np.arange(3 * REPLAY_MIN_ROWS, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    X = -np.ones((n_new, 3), np.float32)
    stacked, _, _, _ = with_replay(X, None, None, stored, (7, 100))
    replayed = stacked[n_new:, 0]
    assert len(replayed) == max(n_new, REPLAY_MIN_ROWS) and len(np.unique(replayed)) == len(replayed)
    assert np.isin(replayed, stored[:, 0]).all() and np.all(np.diff(replayed) > 0)  # stored rows, in their order
    np.testing.assert_array_equal(with_replay(X, None, None, stored, (7, 100))[0], stacked)  # the seed decides
    assert not np.array_equal(with_replay(X, None, None, stored, (7, 101))[0], stacked)
    assert len(with_replay(X, None, None, stored[:50], (7, 100))[0]) == n_new + 50  # all of a small store


def test_one_feature_on_its_own_scale_is_named_under_global_normalization(X, fast):
    from cvae import CompressionVAE

    scaled = X.copy()
    scaled[:, 10] *= 1e6
    with pytest.warns(UserWarning, match="Feature 10's spread is .* normalize='feature'"):
        CompressionVAE(**dict(fast, max_steps=10)).fit(scaled)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        CompressionVAE(**dict(fast, max_steps=10, normalize="feature")).fit(scaled)  # each feature its own scale
        CompressionVAE(**dict(fast, max_steps=10)).fit(X)  # digits' pixels share one


def test_eight_bit_pixels_train_the_model_of_the_values_over_255(digits, tmp_path):
    X = np.round(digits[0][:400] * 255 / 16).astype(np.uint8)
    params = dict(hidden_layer_sizes=(32, 16), batch_size=64, max_steps=60, validation_interval=20, random_state=0,
                  learning_rate="constant")
    with pytest.warns(UserWarning, match="like 8-bit pixel values: likelihood='auto' chose 'bernoulli' on the values "
                      "/ 255"):
        pixels = CompressionVAE(**params, logdir=tmp_path / "run").fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # an explicit choice is not warned about
        scaled = CompressionVAE(**dict(params, likelihood="bernoulli")).fit(X / 255.0)
        assert CompressionVAE(**dict(params, likelihood="bernoulli")).fit(X).spec_.upper == 255
        assert CompressionVAE(**dict(params, likelihood="gaussian")).fit(X).likelihood_ == "gaussian"
    assert pixels.likelihood_ == "bernoulli" and pixels.spec_.upper == 255 and scaled.spec_.upper is None
    # the same model as on X / 255, up to rounding, decoded back to pixel values
    np.testing.assert_allclose(pixels.transform(X), scaled.transform(X / 255.0), atol=1e-3)
    Z = pixels.transform(X[:50])
    np.testing.assert_allclose(pixels.inverse_transform(Z), 255 * scaled.inverse_transform(Z), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(pixels.score_samples(X[:50]), scaled.score_samples(X[:50] / 255.0), rtol=1e-4)
    generated = pixels.sample(200, random_state=0)
    assert generated.min() >= 0 and generated.max() <= 255 and generated.max() > 1
    # the range is part of the run: it loads, and an update keeps it whatever its rows' maximum
    loaded = CompressionVAE.load(tmp_path / "run")
    assert loaded.spec_.upper == 255
    np.testing.assert_array_equal(loaded.transform(X[:20]), pixels.transform(X[:20]))
    assert loaded.partial_fit(X[:100] // 2).spec_.upper == 255
    # a model of [0, 1] does not take 8-bit rows for more training
    with pytest.raises(ValueError, match=r"likelihood='bernoulli' needs X in \[0, 1\], but its values range from 0 to"):
        scaled.partial_fit(X[:100])


def test_warm_start_with_renamed_columns_is_refused(X, fast):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(64)])
    vae = CompressionVAE(**fast).fit(frame)
    with pytest.raises(ValueError, match="'q3' where it had 'p3'"):
        vae.set_params(warm_start=True, max_steps=80).fit(frame.rename(columns={"p3": "q3"}))
    vae.fit(frame)  # the same columns continue
    assert vae.n_steps_ == 80
