"""Generated data with a known structure, for tests, examples and benchmarks."""

import numpy as np
import scipy.sparse as sp

__all__ = ["make_batched_counts", "make_counts", "make_documents"]


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
    expressed, abundance = _cluster_model(rng, n_features, n_expressed, n_clusters, separation)
    abundance /= abundance.sum(axis=1, keepdims=True)
    labels = rng.integers(n_clusters, size=n_samples)
    library = rng.lognormal(np.log(mean_library), library_spread, n_samples)
    X = _negative_binomial_rows(rng, lambda rows: library[rows, None] * abundance[labels[rows]], n_samples,
                                n_features, expressed, dispersion, chunk_rows)
    return X, labels, library


def _cluster_model(rng, n_features, n_expressed, n_clusters, separation):
    """The expressed features (``n_expressed``, ``None`` for half) and each cluster's
    abundances over them, not yet normalized: log-normal base abundances times each
    cluster's log-normal fold changes of log-scale spread ``separation``."""
    n_expressed = max(2, n_features // 2) if n_expressed is None else min(n_expressed, n_features)
    expressed = np.sort(rng.choice(n_features, n_expressed, replace=False))
    base = rng.lognormal(0.0, 1.0, n_expressed)
    return expressed, base * rng.lognormal(0.0, separation, (n_clusters, n_expressed))


def _negative_binomial_rows(rng, mean_of, n_samples, n_features, expressed, dispersion, chunk_rows):
    """CSR counts whose rows' means over the ``expressed`` features are ``mean_of(rows)``
    (a slice of rows), drawn ``chunk_rows`` at a time as negative binomials of inverse
    dispersion ``dispersion``."""
    blocks = []
    for start in range(0, n_samples, chunk_rows):
        mean = mean_of(slice(start, min(start + chunk_rows, n_samples)))
        counts = rng.poisson(rng.gamma(dispersion, mean / dispersion)).astype(np.float32)
        r, c = np.nonzero(counts)
        blocks.append(sp.csr_matrix((counts[r, c], (r, expressed[c])), shape=(len(mean), n_features),
                                    dtype=np.float32))
    X = sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    X.sort_indices()
    return X


def make_batched_counts(n_samples=3000, n_features=500, *, n_batches=3, n_clusters=8, n_expressed=None,
                        separation=1.0, batch_effect=0.5, library_shift=0.5, composition=1.0,
                        mean_library=150.0, library_spread=0.4, dispersion=2.0, chunk_rows=20000,
                        random_state=None, return_effects=False):
    """Counts as :func:`make_counts` makes them, measured in ``n_batches`` batches whose
    technical effects are known, for data integration.

    Each batch multiplies every expressed feature by its own log-normal factor (log-scale
    spread ``batch_effect``), shifts the rows' library sizes by a log-normal factor
    (log-scale spread ``library_shift``), and holds the clusters in its own proportions,
    drawn from a Dirichlet of concentration ``1 / composition`` (0 gives equal proportions;
    larger values, batches that miss some clusters). A row's cluster is its biology and its
    batch the effect to remove.

    Parameters
    ----------
    n_samples, n_features : int
    n_batches : int, default=3
    n_clusters, n_expressed, separation, mean_library, library_spread, dispersion, chunk_rows
        As for :func:`make_counts`.
    batch_effect : float, default=0.5
    library_shift : float, default=0.5
    composition : float, default=1.0
    random_state : int or None, default=None
    return_effects : bool, default=False
        Also return the batches' effects, the truth that an integration should recover.

    Returns
    -------
    X : scipy.sparse.csr_matrix of shape (n_samples, n_features), float32
    labels : ndarray of shape (n_samples,)
        Each row's cluster.
    batch : ndarray of shape (n_samples,)
        Each row's batch.
    library_size : ndarray of shape (n_samples,)
        Each row's expected total.
    effects : dict
        With ``return_effects``: ``"factors"``, each batch's factor on every feature (an
        array of shape ``(n_batches, n_features)``, 1 on features no cluster expresses),
        ``"library_shift"`` (``(n_batches,)``) and ``"proportions"`` (``(n_batches,
        n_clusters)``).
    """
    rng = np.random.default_rng(random_state)
    expressed, biology = _cluster_model(rng, n_features, n_expressed, n_clusters, separation)
    factors = rng.lognormal(0.0, batch_effect, (n_batches, len(expressed)))
    batch = rng.integers(n_batches, size=n_samples)
    proportions = (np.full((n_batches, n_clusters), 1.0 / n_clusters) if composition == 0
                   else rng.dirichlet(np.full(n_clusters, 1.0 / composition), n_batches))
    # each row's cluster from its batch's proportions, by the inverse of their cumulative sums
    cumulative = np.cumsum(proportions, axis=1)[batch]
    labels = np.minimum((rng.random(n_samples)[:, None] >= cumulative).sum(axis=1), n_clusters - 1)
    shift = rng.lognormal(0.0, library_shift, n_batches)
    library = rng.lognormal(np.log(mean_library), library_spread, n_samples) * shift[batch]
    abundance = biology[:, None, :] * factors[None, :, :]  # (cluster, batch, feature)
    abundance /= abundance.sum(axis=2, keepdims=True)
    X = _negative_binomial_rows(rng, lambda rows: library[rows, None] * abundance[labels[rows], batch[rows]],
                                n_samples, n_features, expressed, dispersion, chunk_rows)
    if not return_effects:
        return X, labels, batch, library
    full = np.ones((n_batches, n_features))
    full[:, expressed] = factors
    return X, labels, batch, library, {"factors": full, "library_shift": shift, "proportions": proportions}


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
