"""Feature normalization statistics stored with the model, from memory or a stream."""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import StandardScaler

__all__ = ["NORMALIZATIONS", "DataSummary", "normalization_statistics", "summarize"]

NORMALIZATIONS = ("global", "feature", "none")


def normalization_statistics(X, method="global"):
    """Per-feature ``(loc, scale)`` such that ``(X - loc) / scale`` is normalized.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training data.
    method : {"global", "feature", "none"}, default="global"
        ``"global"`` centers each feature and divides all of them by one scale, the root
        mean square of the feature standard deviations: the model becomes independent of
        the data's units while features keep their relative scales (as in PCA).
        ``"feature"`` standardizes each feature to unit variance (the original
        CompressionVAE's ``feature_normalization=True``); zero-variance features get
        ``scale=1`` so a constant feature maps to zero instead of dividing by zero.
        ``"none"`` is the identity.

    Returns
    -------
    loc, scale : ndarray of shape (n_features,), dtype float32
    """
    return scaler_statistics(StandardScaler().fit(X), method)


def scaler_statistics(scaler, method="global"):
    """:func:`normalization_statistics` from a fitted ``StandardScaler``.

    Raises
    ------
    ValueError
        If a scale is below float32's smallest normal number (about 1.2e-38), in which the
        model computes: such data would be divided by zero.
    """
    n_features = scaler.n_features_in_
    if method == "none":
        return np.zeros(n_features, np.float32), np.ones(n_features, np.float32)
    if method == "feature":
        scale = scaler.scale_
    else:
        rms = float(np.sqrt(np.mean(scaler.var_)))
        scale = np.full(n_features, rms if rms > 0 else 1.0)
    tiny = np.flatnonzero(scale < np.finfo(np.float32).tiny)
    if len(tiny):
        what = "X varies" if method == "global" else f"feature {tiny[0]} of X varies"
        raise ValueError(
            f"{what} by only {scale[tiny[0]]:.3g} (standard deviation), below float32's smallest normal number "
            f"({np.finfo(np.float32).tiny:.3g}); the model computes in float32. Rescale X, e.g. multiply it by "
            f"{10.0 ** -np.floor(np.log10(scale[tiny[0]])):.0e}."
        )
    return scaler.mean_.astype(np.float32), scale.astype(np.float32)


@dataclass
class DataSummary:
    """What one pass over the training rows learns: moments, range, count, whether every
    value is a whole number, and the moments of ``log1p`` of the data when asked for
    (the encoder's input under a count likelihood)."""

    scaler: StandardScaler
    low: float
    high: float
    n_samples: int
    integers: bool = False
    log_scaler: StandardScaler = None

    def normalization(self, method, log=False):
        """``(loc, scale)`` as :func:`normalization_statistics` computes them, of the data
        or (``log=True``) of ``log1p`` of the data."""
        return scaler_statistics(self.log_scaler if log else self.scaler, method)

    @property
    def mean_total(self):
        """Mean of the rows' totals (the mean library size of count data)."""
        return float(np.sum(self.scaler.mean_))


# Sparse float32 values above this are summarized in float64: their squares, summed over
# rows, would leave float32's range (about 3.4e38).
_FLOAT32_SQUARE_SAFE = 1e15


def summarize(chunks, log_counts=False):
    """Summarize data given as an iterable of 2-D arrays, holding one chunk at a time.

    Means and variances are merged chunk by chunk with ``StandardScaler.partial_fit``
    (the pairwise update of Chan, Golub and LeVeque, accumulated in float64), so the result
    matches a single in-memory pass to about 1e-7 relative. A chunk may be a ``scipy.sparse``
    matrix (summarized without densifying) and may come as a pair ``(chunk, sample
    weights)``, whose weighted moments are then computed. ``log_counts`` adds the moments
    of ``log1p`` of non-negative data.
    """
    scaler = log_scaler = None
    low, high, n_samples, integers = np.inf, -np.inf, 0, True
    for item in chunks:
        chunk, weights = item if isinstance(item, tuple) else (item, None)
        if chunk.shape[0] == 0:
            continue
        if scaler is None:  # sparse data cannot be centred in place; the moments are the same
            scaler, log_scaler = (StandardScaler(with_mean=not sp.issparse(chunk)) for _ in range(2))
        large = sp.issparse(chunk) and chunk.nnz and np.abs(chunk.data).max() > _FLOAT32_SQUARE_SAFE
        if large and chunk.dtype == np.float32:
            # scikit-learn's sparse moments square the values in their own precision: float32 would overflow
            chunk = chunk.astype(np.float64)
        scaler.partial_fit(chunk, sample_weight=weights)
        values = chunk.data if sp.issparse(chunk) else chunk
        if values.size:
            low, high = min(low, float(values.min())), max(high, float(values.max()))
        if sp.issparse(chunk) and chunk.nnz < chunk.shape[0] * chunk.shape[1]:
            low, high = min(low, 0.0), max(high, 0.0)
        integers = integers and bool(np.all(np.mod(values, 1) == 0))
        if log_counts and low >= 0:
            log_scaler.partial_fit(chunk.log1p() if sp.issparse(chunk) else np.log1p(chunk), sample_weight=weights)
        n_samples += chunk.shape[0]
    if n_samples == 0:
        raise ValueError("Found no samples to fit on.")
    return DataSummary(scaler, low, high, n_samples, integers, log_scaler if log_counts and low >= 0 else None)
