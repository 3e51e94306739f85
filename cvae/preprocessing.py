"""Feature normalization statistics stored with the model."""

import numpy as np
from sklearn.preprocessing import StandardScaler

__all__ = ["normalization_statistics"]


def normalization_statistics(X, enabled=True):
    """Per-feature ``(loc, scale)`` that standardize ``X``.

    Zero-variance features get ``scale=1`` (scikit-learn's convention), so a constant
    feature maps to zero instead of dividing by zero.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training data.
    enabled : bool, default=True
        If False, return the identity transform (``loc=0``, ``scale=1``).

    Returns
    -------
    loc, scale : ndarray of shape (n_features,), dtype float32
    """
    n_features = X.shape[1]
    if not enabled:
        return np.zeros(n_features, np.float32), np.ones(n_features, np.float32)
    scaler = StandardScaler().fit(X)
    return scaler.mean_.astype(np.float32), scaler.scale_.astype(np.float32)
