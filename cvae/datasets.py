"""Generated data with a known structure, for tests, examples and benchmarks."""

import numpy as np
import scipy.sparse as sp

__all__ = ["make_counts", "make_documents"]


def make_counts(n_samples=2000, n_features=500, *, n_clusters=8, n_expressed=None, separation=1.0,
                mean_library=150.0, library_spread=0.4, dispersion=2.0, chunk_rows=20000, random_state=None):
    """Sparse counts from a latent cluster model, like single-cell RNA counts.

    ``n_expressed`` features are expressed, with log-normal base abundances; each cluster
    multiplies them by its own log-normal fold changes of log-scale spread ``separation``
    (how far apart the clusters are). Each row draws a cluster, a library size (log-normal
    around ``mean_library`` with log-scale spread ``library_spread``) and negative-binomial
    counts with mean ``library size * abundance`` and inverse dispersion ``dispersion``;
    the other features are zero. Rows are generated ``chunk_rows`` at a time, so the dense
    matrix never exists.

    Parameters
    ----------
    n_samples, n_features : int
    n_clusters : int, default=8
    n_expressed : int, default=None
        Features expressed; ``None`` means ``max(2, n_features // 2)``.
    separation : float, default=1.0
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
    n_expressed = max(2, n_features // 2) if n_expressed is None else min(n_expressed, n_features)
    expressed = np.sort(rng.choice(n_features, n_expressed, replace=False))
    base = rng.lognormal(0.0, 1.0, n_expressed)
    abundance = base * rng.lognormal(0.0, separation, (n_clusters, n_expressed))
    abundance /= abundance.sum(axis=1, keepdims=True)
    labels = rng.integers(n_clusters, size=n_samples)
    library = rng.lognormal(np.log(mean_library), library_spread, n_samples)
    blocks = []
    for start in range(0, n_samples, chunk_rows):
        rows = slice(start, min(start + chunk_rows, n_samples))
        mean = library[rows, None] * abundance[labels[rows]]
        counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)
        r, c = np.nonzero(counts)
        blocks.append(sp.csr_matrix((counts[r, c], (r, expressed[c])), shape=(len(mean), n_features),
                                    dtype=np.float32))
    X = sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    X.sort_indices()
    return X, labels, library


def make_documents(n_documents, n_topics=5, random_state=0):
    """Short documents, each drawing a third of its words from one of ``n_topics`` topics'
    vocabularies (60 words each) and the rest from a shared one (300 words).

    Returns
    -------
    documents : list of str
    topic : ndarray of shape (n_documents,)
        Each document's topic.
    """
    rng = np.random.default_rng(random_state)
    shared = [f"common{i}" for i in range(300)]
    topics = [[f"topic{t}word{i}" for i in range(60)] for t in range(n_topics)]
    topic = rng.integers(n_topics, size=n_documents)
    documents = []
    for t in topic:
        n_words = rng.integers(30, 120)
        own = rng.choice(topics[t], size=n_words // 3)
        common = rng.choice(shared, size=n_words - len(own))
        documents.append(" ".join(rng.permutation(np.concatenate([own, common]))))
    return documents, topic
