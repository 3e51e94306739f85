"""Measures of a fitted embedding that scikit-learn does not provide."""

import numpy as np

__all__ = ["active_units"]


def active_units(Z, threshold=0.01):
    """Number of latent dimensions the encoder uses (Burda, Grosse and Salakhutdinov, 2016).

    A dimension is active when its posterior mean varies across the data:
    ``Var_x(E_q[z_d | x]) > threshold``. A dimension whose posterior collapsed onto the
    prior has the same mean (zero) for every sample and carries no information.

    Parameters
    ----------
    Z : array-like of shape (n_samples, n_components)
        Posterior means, as returned by :meth:`cvae.CompressionVAE.transform` (with IAF,
        the flow at zero noise stands in for the mean).
    threshold : float, default=0.01
        The variance below which a dimension counts as inactive; 0.01 as in the paper.

    Returns
    -------
    n_active : int
    """
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2 or len(Z) < 2:
        raise ValueError(f"Z must be 2-D with at least 2 samples, got shape {Z.shape}.")
    return int(np.sum(Z.var(axis=0) > threshold))
