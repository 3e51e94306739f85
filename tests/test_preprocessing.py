"""Normalization statistics, in one pass or streamed."""

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from cvae import CompressionVAE
from cvae.data.preprocessing import normalization_statistics, summarize


def test_streaming_statistics_match_the_in_memory_ones():
    # A large mean next to a small spread is where a naive sum of squares loses digits.
    X = np.random.default_rng(0).normal(loc=1000.0, scale=0.5, size=(20000, 6)).astype(np.float32)
    X[:, 3] = 7.0  # a constant feature
    summary = summarize(np.array_split(X, 37))
    reference = StandardScaler().fit(X)
    np.testing.assert_allclose(summary.scaler.mean_, reference.mean_, rtol=1e-6)
    np.testing.assert_allclose(summary.scaler.var_, reference.var_, rtol=1e-6, atol=1e-12)
    for method in ("global", "feature", "none"):
        for got, want in zip(summary.normalization(method), normalization_statistics(X, method)):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (summary.low, summary.high, summary.n_samples) == (X.min(), X.max(), 20000)


def test_data_whose_scale_underflows_float32_is_refused_and_large_data_trains(X, fast):
    with pytest.raises(ValueError, match="below float32's smallest normal number.*Rescale X"):
        CompressionVAE(**fast).fit(X.astype(np.float64) * 1e-40)
    big = CompressionVAE(**fast).fit((X / 16 * 3.3e38).astype(np.float32))
    assert np.isfinite(big.best_validation_loss_) and np.isfinite(big.transform(X)).all()


def test_normalization_statistics():
    from cvae.data.preprocessing import normalization_statistics

    X = np.array([[0.0, 1.0, 5.0], [2.0, 3.0, 5.0], [4.0, 5.0, 5.0]])
    loc, scale = normalization_statistics(X, "feature")
    np.testing.assert_allclose(loc, [2, 3, 5])
    np.testing.assert_allclose(scale, [np.sqrt(8 / 3), np.sqrt(8 / 3), 1.0], rtol=1e-6)
    loc, scale = normalization_statistics(X, "global")
    np.testing.assert_allclose(scale, np.full(3, np.sqrt(np.mean([8 / 3, 8 / 3, 0.0]))), rtol=1e-6)
    loc, scale = normalization_statistics(X, "none")
    assert np.all(loc == 0) and np.all(scale == 1)
    assert np.all(normalization_statistics(np.ones((4, 2)), "global")[1] == 1)
