"""Generated data with a known structure, for tests, examples and benchmarks."""

import numpy as np
import scipy.sparse as sp

__all__ = ["make_counts"]


def make_counts(n_samples=2000, n_features=500, *, n_clusters=8, n_expressed=None, mean_library=150.0,
                library_spread=0.4, dispersion=2.0, chunk_rows=20000, random_state=None):
    """Sparse counts from a latent cluster model, like single-cell RNA counts.

    Each cluster expresses ``n_expressed`` features: half shared by every cluster (with
    cluster-specific fold changes) and half of its own, with log-normal relative abundances.
    Each row draws a cluster, a library size (log-normal around ``mean_library`` with
    log-scale spread ``library_spread``), and negative-binomial counts with mean ``library
    size * abundance`` and inverse dispersion ``dispersion``; the other features are zero.
    Rows are generated ``chunk_rows`` at a time, so the dense matrix never exists.

    Parameters
    ----------
    n_samples, n_features : int
    n_clusters : int, default=8
    n_expressed : int, default=None
        Features expressed per cluster; ``None`` means ``max(2, n_features // 10)``.
    mean_library : float, default=150.0
    library_spread : float, default=0.4
    dispersion : float, default=2.0
        Inverse dispersion ``theta`` (variance ``mu + mu^2 / theta``); large is Poisson.
    chunk_rows : int, default=20000
    random_state : int or None, default=None

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), float32
    labels : ndarray of shape (n_samples,)
        Each row's cluster.
    library_size : ndarray of shape (n_samples,)
        Each row's expected total.
    """
    rng = np.random.default_rng(random_state)
    n_expressed = max(2, n_features // 10) if n_expressed is None else min(n_expressed, n_features)
    n_shared = n_expressed // 2
    genes = rng.permutation(n_features)
    shared, pool = genes[:n_shared], genes[n_shared:]
    base = rng.lognormal(0.0, 1.0, n_shared)
    expressed, abundance = [], []
    for _ in range(n_clusters):
        own = rng.choice(pool, n_expressed - n_shared, replace=False)
        weights = np.concatenate([base * rng.lognormal(0.0, 0.5, n_shared), rng.lognormal(0.0, 1.0, len(own))])
        order = np.argsort(np.concatenate([shared, own]))
        expressed.append(np.concatenate([shared, own])[order])
        abundance.append((weights / weights.sum())[order])
    labels = rng.integers(n_clusters, size=n_samples)
    library = rng.lognormal(np.log(mean_library), library_spread, n_samples)
    blocks = []
    for start in range(0, n_samples, chunk_rows):
        rows = np.arange(start, min(start + chunk_rows, n_samples))
        parts = []
        for k in range(n_clusters):
            members = rows[labels[rows] == k]
            mean = library[members, None] * abundance[k][None, :]
            counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)
            r, c = np.nonzero(counts)
            parts.append((members[r] - start, expressed[k][c], counts[r, c]))
        r, c, v = (np.concatenate(p) for p in zip(*parts))
        blocks.append(sp.csr_matrix((v, (r, c)), shape=(len(rows), n_features), dtype=np.float32))
    X = sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    X.sort_indices()
    return X, labels, library
