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

import warnings

import numpy as np
from scipy.special import softmax, xlogy

__all__ = ["FITTED_ROWS", "batch_corrected"]

# The correction is fitted on at most this many rows (evenly spaced) and applied to the
# others as a function: each is assigned to the fitted clusters and its group's offsets
# removed. Fitting costs about 1 s per 10,000 rows of 50 components on a 2-core CPU.
FITTED_ROWS = 10_000


def batch_corrected(X, groups, *, n_clusters=None, diversity=2.0, sigma=0.1, ridge=0.2, max_iter=10,
                    max_cluster_iter=20, tol=1e-4, n_blocks=20, fitted_rows=FITTED_ROWS):
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
    fitted_rows : int, default=FITTED_ROWS
        Above this many rows, the correction is fitted on this many, evenly spaced, and the
        others are assigned to its clusters by their distance alone and corrected by their
        group's offsets there.

    Returns
    -------
    ndarray of shape (n_samples, n_features), float32
        ``X`` itself (as float32) when there is one group.
    """
    groups = np.unique(np.asarray(groups), return_inverse=True)[1].reshape(-1)
    n, n_groups = len(X), int(groups.max(initial=0)) + 1
    if n < 2 or n_groups < 2:
        return np.asarray(X, dtype=np.float32)
    fitted = np.arange(n) if n <= fitted_rows else np.linspace(0, n - 1, fitted_rows).round().astype(np.int64)
    sample = np.asarray(X[fitted], dtype=np.float64)
    onehot = np.eye(n_groups)[groups[fitted]]
    share = onehot.mean(axis=0)
    n_clusters = min(len(sample), n_clusters or int(np.clip(round(len(sample) / 30), 1, 100)))
    clustering = _Clustering(onehot, share, diversity, sigma, max_cluster_iter, tol, n_blocks)
    unit = _unit(sample)
    responsibility = clustering.start(unit, n_clusters)
    previous = np.inf
    for _ in range(max_iter):
        responsibility, objective = clustering.fit(unit, responsibility)
        offsets = _ridge_offsets(sample, onehot, responsibility, ridge, share)
        corrected = sample - _offsets_of(responsibility, offsets, groups[fitted])
        unit = _unit(corrected)
        if previous - objective < tol * abs(objective):
            break
        previous = objective
    out = np.empty((n, sample.shape[1]), dtype=np.float32)
    out[fitted] = corrected
    rest = np.setdiff1d(np.arange(n), fitted)
    if len(rest):
        # the other rows' clusters: the fitted rows' clusters, centred in the uncorrected space
        centres = _unit(responsibility.T @ _unit(sample))
        for start in range(0, len(rest), 65536):
            rows = rest[start : start + 65536]
            block = np.asarray(X[rows], dtype=np.float64)
            weights = softmax(-_distance(_unit(block), centres) / sigma, axis=1)
            out[rows] = block - _offsets_of(weights, offsets, groups[rows])
    return out


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
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            # rows with fewer distinct values than clusters: the spare clusters repeat a
            # centre and share its rows, which the soft clustering handles
            warnings.simplefilter("ignore", ConvergenceWarning)
            centres = KMeans(n_clusters, n_init=1, random_state=0).fit(unit).cluster_centers_
        return softmax(-_distance(unit, _unit(centres)) / self.sigma, axis=1)

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
                new = softmax(-distance[rows] / self.sigma + self.diversity * penalty, axis=1)
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


def _ridge_offsets(X, onehot, responsibility, ridge, share):
    """Each group's offset of ``X`` in each cluster, shape (clusters, groups, features):
    a ridge regression on the cluster's responsibilities, with the intercept (the cluster's
    own centre) fitted and kept, and each group's offset penalized by ``ridge`` times the
    rows it is expected to hold there."""
    design = np.hstack([np.ones((len(X), 1)), onehot])
    offsets = np.empty((responsibility.shape[1], onehot.shape[1], X.shape[1]))
    for k, weights in enumerate(responsibility.T):
        # the intercept is not shrunk; 1e-8 keeps an empty cluster, or a group absent from
        # the fitted rows, solvable (its offset 0)
        penalty = np.diag(np.concatenate([[0.0], ridge * weights.sum() * share]) + 1e-8)
        weighted = design * weights[:, None]
        offsets[k] = np.linalg.solve(weighted.T @ design + penalty, weighted.T @ X)[1:]
    return offsets


def _offsets_of(weights, offsets, groups):
    """Each row's offset: its group's ``offsets`` averaged over its clusters' ``weights``."""
    out = np.zeros((len(weights), offsets.shape[2]))
    for group in np.unique(groups):
        rows = groups == group
        out[rows] = weights[rows] @ offsets[:, group]
    return out


def _unit(X):
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _distance(unit, centres):
    """Squared Euclidean distances between unit rows and unit centres: 2 (1 - cosine)."""
    return 2.0 * (1.0 - unit @ centres.T)
