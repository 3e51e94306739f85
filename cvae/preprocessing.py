"""Feature normalization statistics stored with the model."""

import numpy as np
from sklearn.preprocessing import StandardScaler

__all__ = ["NORMALIZATIONS", "normalization_statistics"]

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
    n_features = X.shape[1]
    if method == "none":
        return np.zeros(n_features, np.float32), np.ones(n_features, np.float32)
    scaler = StandardScaler().fit(X)
    if method == "feature":
        return scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32)
    rms = float(np.sqrt(np.mean(scaler.var_)))
    scale = np.full(n_features, rms if rms > 0 else 1.0, np.float32)
    return scaler.mean_.astype(np.float32), scale
