"""The way in (cvae.data.inputs): bad input to every entry point gets a clear error naming the
problem; numerical faults never give NaN embeddings."""

import copy
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.exceptions import ConvergenceWarning, NotFittedError
import torch

from cvae import CompressionVAE

TINY = dict(hidden_layer_sizes=(8,), batch_size=8, max_steps=6, validation_interval=3, learning_rate="constant",
            random_state=0)


@pytest.fixture(scope="module")
def fitted():
    X = np.random.default_rng(0).normal(size=(40, 4))
    return CompressionVAE(**TINY).fit(X), X


def _with(X, index, value):
    X = np.array(X, dtype=float)
    X[index] = value
    return X


# (description, callable(estimator, X) -> None, exception type, message pattern)
BAD_FIT_INPUTS = [
    ("NaN", lambda X: _with(X, (0, 0), np.nan), ValueError, "Input X contains NaN"),
    ("infinity", lambda X: _with(X, (1, 2), np.inf), ValueError, "Input X contains infinity"),
    ("beyond float32", lambda X: _with(X, (1, 2), 1e300), ValueError, "beyond float32's range"),
    ("no samples", lambda X: X[:0], ValueError, r"0 sample\(s\)"),
    ("no features", lambda X: X[:, :0], ValueError, r"0 feature\(s\)"),
    ("one sample", lambda X: X[:1], ValueError, "of 1 samples"),
    ("1-D", lambda X: X[:, 0], ValueError, "Expected 2D array, got 1D array"),
    ("3-D", lambda X: X[:, :, None], ValueError, "Found array with dim 3"),
    ("strings", lambda X: X.astype(str).astype(object) + "x", ValueError, "could not convert string to float"),
    ("complex", lambda X: X + 1j, ValueError, "Complex data not supported"),
    ("sparse NaN", lambda X: sp.csr_matrix(_with(X, (0, 0), np.nan)), ValueError, "Input X contains NaN"),
]


@pytest.mark.parametrize("name, make, error, match", BAD_FIT_INPUTS, ids=[row[0] for row in BAD_FIT_INPUTS])
def test_bad_input_to_fit(fitted, name, make, error, match):
    with pytest.raises(error, match=match):
        CompressionVAE(**TINY).fit(make(fitted[1]))


@pytest.mark.parametrize("name, make, error, match", BAD_FIT_INPUTS[:4] + BAD_FIT_INPUTS[6:],
                         ids=[row[0] for row in BAD_FIT_INPUTS[:4] + BAD_FIT_INPUTS[6:]])
def test_bad_input_to_transform_and_score(fitted, name, make, error, match):
    vae, X = fitted
    for method in (vae.transform, vae.score_samples):
        with pytest.raises(error, match=match):
            method(make(X))


@pytest.mark.parametrize(
    "Z, error, match",
    [
        (np.array([[np.nan, 0.0]]), ValueError, "Input Z contains NaN"),
        (np.array([[np.inf, 0.0]]), ValueError, "Input Z contains infinity"),
        (np.zeros((3, 5)), ValueError, "Z has 5 columns, but this CompressionVAE has n_components=2"),
        (np.zeros(2), ValueError, "Expected 2D array, got 1D array"),
        (np.zeros((0, 2)), ValueError, r"0 sample\(s\)"),
        (np.array([["a", "b"]], dtype=object), ValueError, "could not convert string to float"),
        (sp.csr_matrix(np.array([[np.nan, 0.0]])), ValueError, "Input Z contains NaN"),
    ],
)
def test_bad_input_to_inverse_transform(fitted, Z, error, match):
    with pytest.raises(error, match=match):
        fitted[0].inverse_transform(Z)


def test_wrong_number_of_features_everywhere(fitted):
    vae, X = fitted
    for method in (vae.transform, vae.score_samples, vae.score):
        with pytest.raises(ValueError, match="X has 3 features, but CompressionVAE is expecting 4 features"):
            method(X[:, :3])


def test_unfitted_methods_raise_not_fitted():
    vae = CompressionVAE()
    for call in (lambda: vae.transform([[0.0]]), lambda: vae.inverse_transform([[0.0, 0.0]]),
                 lambda: vae.score_samples([[0.0]]), lambda: vae.sample(2)):
        with pytest.raises(NotFittedError):
            call()


def test_overflowing_outputs_are_a_clear_error(fitted):
    vae, X = copy.deepcopy(fitted[0]), fitted[1]
    with torch.no_grad():
        vae.module_.decoder[-1].weight.fill_(3e38)  # inject an overflow
        vae.module_.posterior.weight.fill_(3e38)
    with pytest.raises(ValueError, match="The decoded data overflowed float32 for some rows: Z lies too far"):
        vae.inverse_transform(np.array([[1e3, 1e3], [-1e3, -1e3], [1e3, -1e3], [-1e3, 1e3]]))
    for placement in ("neighbors", "encoder"):
        with pytest.raises(ValueError, match="The embedding overflowed float32 for some rows: X lies too far"):
            vae.set_params(placement=placement).transform(X * 1e30)


def test_object_array_of_numbers_is_converted(fitted):
    vae, X = fitted
    np.testing.assert_array_equal(vae.transform(X.astype(object)), vae.transform(X))


def test_huge_learning_rate_rolls_back_and_never_gives_nan_embeddings():
    X = np.random.default_rng(0).normal(size=(200, 6)) * 1e15
    vae = CompressionVAE(**dict(TINY, max_steps=200, validation_interval=5, learning_rate_init=1e12),
                         normalize="none")
    with pytest.warns(ConvergenceWarning, match="No validation loss was finite in 20 steps"):
        vae.fit(X)
    assert vae.stop_reason_ == "diverged"
    assert sum(not np.isfinite(row["validation_loss"]) for row in vae.history_) == 4  # 3 rollbacks, then stop
    assert np.isfinite(vae.transform(X)).all()
    assert np.isfinite(vae.inverse_transform(vae.transform(X))).all()


finite_or_not = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-1e6, max_value=1e6),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays(np.float64, st.tuples(st.integers(0, 12), st.integers(0, 4)), elements=finite_or_not))
def test_fit_transform_inverse_on_random_arrays(X):
    """Any shape, any values: either a correct, finite result or a documented error."""
    vae = CompressionVAE(**TINY)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            vae.fit(X)
    except ValueError as exc:
        assert any(word in str(exc) for word in ("NaN", "infinity", "sample(s)", "feature(s)", "float32", "samples"))
        return
    try:
        Z = vae.transform(X)
        assert Z.shape == (X.shape[0], 2) and np.isfinite(Z).all()
        # Data near float32's limit (e.g. 2.7e38) can decode beyond it: an error, not inf.
        X_back = vae.inverse_transform(Z)
    except ValueError as exc:
        assert "overflowed float32" in str(exc)
        return
    assert X_back.shape == X.shape and np.isfinite(X_back).all()
    scores = vae.score_samples(X)
    assert scores.shape == (X.shape[0],) and not np.isnan(scores).any()


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 6), st.just(2)), elements=finite_or_not))
def test_inverse_transform_on_random_latent_codes(fitted, Z):
    vae = fitted[0]
    try:
        X = vae.inverse_transform(Z)
    except ValueError as exc:
        assert any(word in str(exc) for word in ("NaN", "infinity", "float32"))
        return
    assert X.shape == (len(Z), 4) and np.isfinite(X).all()
