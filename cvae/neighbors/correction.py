"""Batch effects taken out of the space a batch-balanced graph is searched in.

Rows of different batches that hold the same kind of cell differ by each batch's technical
effect. Searched as they are, a row's nearest rows in another batch are the few that the
effect brings closest (the edge of that batch's cloud), not the rows of its kind spread over
it. Harmony (Korsunsky et al. 2019) removes such effects from principal components: it
clusters the rows softly, with a penalty that favours clusters holding every batch in its
overall share, removes each batch's linear offset within each cluster, and clusters the
corrected rows again. :func:`batch_corrected` is that procedure, written from the paper. The
package uses it for the graph search alone: the model trains on the rows as they were.
"""

import numpy as np
from scipy.special import xlogy

__all__ = ["batch_corrected"]


def batch_corrected(X, groups, *, n_clusters=None, diversity=2.0, sigma=0.1, ridge=0.2, max_iter=10,
                    max_cluster_iter=20, tol=1e-4, n_blocks=20):
    """``X`` with each group's offset removed within soft clusters of its rows, as float32.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Rows to correct, such as principal components.
    groups : array-like of shape (n_samples,)
        Each row's batch; rows are corrected towards each other across batches.
    n_clusters : int, default=None
        Soft clusters, within which offsets are removed; ``None``: a cluster per 30 rows,
        from 1 to 100 (Harmony's rule).
    diversity : float, default=2.0
        How strongly a cluster is pushed to hold every group in its overall share, >= 0
        (Harmony's theta); 0 is plain soft k-means.
    sigma : float, default=0.1
        Softness of the clustering, > 0: larger spreads each row over more clusters.
    ridge : float, default=0.2
        Ridge penalty on a group's offset in a cluster, as a share of the rows it is expected
        to hold there, >= 0 (Harmony's alpha, which sets its lambda): larger removes less.
    max_iter, max_cluster_iter : int, default=10, 20
        Rounds of clustering and correction, and clustering passes per round.
    tol : float, default=1e-4
        Relative change of the clustering's objective below which a round or a pass stops.
    n_blocks : int, default=20
        The clustering updates the rows in this many interleaved blocks, each against the
        others' current clusters, which keeps the diversity penalty from oscillating.

    Returns
    -------
    ndarray of shape (n_samples, n_features), float32
        ``X`` itself (as float32) when there is one group.
    """
    X = np.asarray(X, dtype=np.float64)
    groups = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    n = len(X)
    if n < 2 or groups.max(initial=0) < 1:
        return X.astype(np.float32)
    onehot = np.zeros((n, groups.max() + 1))
    onehot[np.arange(n), groups] = 1.0
    share = onehot.mean(axis=0)
    n_clusters = min(n, n_clusters or int(np.clip(round(n / 30), 1, 100)))
    clustering = _Clustering(onehot, share, diversity, sigma, max_cluster_iter, tol, n_blocks)
    unit = _unit(X)
    responsibility = clustering.start(unit, n_clusters)
    corrected, previous = X, np.inf
    for _ in range(max_iter):
        responsibility, objective = clustering.fit(unit, responsibility)
        corrected = _ridge_corrected(X, onehot, responsibility, ridge, share)
        unit = _unit(corrected)
        if previous - objective < tol * abs(objective):
            break
        previous = objective
    return corrected.astype(np.float32)


class _Clustering:
    """Soft k-means on the unit sphere with Harmony's diversity penalty."""

    def __init__(self, onehot, share, diversity, sigma, max_iter, tol, n_blocks):
        self.onehot, self.share, self.diversity, self.sigma = onehot, share, diversity, sigma
        self.max_iter, self.tol = max_iter, tol
        n = len(onehot)
        self.blocks = [np.arange(start, n, n_blocks) for start in range(min(n_blocks, n))]

    def start(self, unit, n_clusters):
        """Responsibilities of k-means' clusters of ``unit`` (rows by clusters)."""
        from sklearn.cluster import KMeans

        centres = KMeans(n_clusters, n_init=1, random_state=0).fit(unit).cluster_centers_
        return _softmax(-_distance(unit, _unit(centres)) / self.sigma)

    def fit(self, unit, responsibility):
        """Updated responsibilities, and the clustering's objective."""
        responsibility = responsibility.copy()
        observed = responsibility.T @ self.onehot
        expected = np.outer(responsibility.sum(axis=0), self.share)
        previous = np.inf
        for _ in range(self.max_iter):
            distance = _distance(unit, _unit(responsibility.T @ unit))
            for rows in self.blocks:
                old = responsibility[rows]
                observed -= old.T @ self.onehot[rows]
                expected -= np.outer(old.sum(axis=0), self.share)
                penalty = self.onehot[rows] @ np.log((expected + 1) / (observed + 1)).T
                new = _softmax(-distance[rows] / self.sigma + self.diversity * penalty)
                responsibility[rows] = new
                observed += new.T @ self.onehot[rows]
                expected += np.outer(new.sum(axis=0), self.share)
            imbalance = self.onehot @ np.log((observed + 1) / (expected + 1)).T
            entropy = xlogy(responsibility, responsibility).sum()
            objective = float((responsibility * distance).sum() + self.sigma * entropy
                              + self.sigma * self.diversity * (responsibility * imbalance).sum())
            if previous - objective < self.tol * abs(objective):
                break
            previous = objective
        return responsibility, objective


def _ridge_corrected(X, onehot, responsibility, ridge, share):
    """``X`` less each group's offset in each cluster, fitted by ridge regression on the
    cluster's responsibilities, with the intercept (the cluster's own centre) kept and each
    group's offset penalized by ``ridge`` times the rows it is expected to hold there."""
    design = np.hstack([np.ones((len(X), 1)), onehot])
    out = X.copy()
    for weights in responsibility.T:
        # the intercept is not shrunk; 1e-8 keeps an empty cluster solvable
        penalty = np.diag(np.concatenate([[1e-8], ridge * weights.sum() * share]))
        weighted = design * weights[:, None]
        coefficients = np.linalg.solve(weighted.T @ design + penalty, weighted.T @ X)
        coefficients[0] = 0.0
        out -= weighted @ coefficients
    return out


def _unit(X):
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _distance(unit, centres):
    """Squared Euclidean distances between unit rows and unit centres: 2 (1 - cosine)."""
    return 2.0 * (1.0 - unit @ centres.T)


def _softmax(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)
