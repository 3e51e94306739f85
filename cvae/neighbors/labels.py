"""Labels in the neighbour graph: spread to unlabelled rows, and folded into the graph that the
neighbour term trains on.

Labels act through the graph, as UMAP's supervised mode does (it intersects the data's
graph with one of the labels): a row's neighbours of another class are replaced, in the
proportion ``target_weight``, by neighbours of its own class, so that classes part in
the embedding while a row keeps the neighbours the data gives it within its class. A row
without a label takes the class that spreads to it over the graph from the labelled
rows (Zhou et al., 2004, as scikit-learn's ``LabelSpreading`` does), where that class is
clear.
"""

import numpy as np
import scipy.sparse as sp

__all__ = ["UNLABELLED", "labelled_graph", "spread_labels"]

# How an unlabelled row is marked among integer labels, as in scikit-learn's
# semi-supervised estimators; among string or object labels, None marks one.
UNLABELLED = -1
# Label spreading: how much a row keeps of what its neighbours pass it, per iteration, and
# how sure the spread must be (the share of the row's spread mass on one class) for an
# unlabelled row to take that class.
_SPREAD_ALPHA = 0.9
_SPREAD_ITERATIONS = 30
_SPREAD_CONFIDENCE = 0.8


def spread_labels(graph, codes, n_classes):
    """Codes for every row: a labelled row's own, an unlabelled row's the class that
    spreads to it over the symmetrized ``graph`` (rows' neighbour indices) when that class
    holds at least ``_SPREAD_CONFIDENCE`` of its spread mass, else ``-1``."""
    labelled = codes != UNLABELLED
    if labelled.all():
        return codes
    n, k = graph.shape
    adjacency = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), graph.ravel())), shape=(n, n))
    adjacency = adjacency + adjacency.T
    degree = np.asarray(adjacency.sum(axis=1)).ravel()
    inverse_root = sp.diags(1 / np.sqrt(np.maximum(degree, 1e-12)))
    normalized = inverse_root @ adjacency @ inverse_root
    seeds = np.zeros((n, n_classes))
    seeds[np.flatnonzero(labelled), codes[labelled]] = 1
    spread = seeds.copy()
    for _ in range(_SPREAD_ITERATIONS):
        spread = _SPREAD_ALPHA * (normalized @ spread) + (1 - _SPREAD_ALPHA) * seeds
    total = spread.sum(axis=1)
    best = spread.argmax(axis=1)
    sure = spread[np.arange(n), best] >= _SPREAD_CONFIDENCE * np.maximum(total, 1e-300)
    return np.where(labelled, codes, np.where(sure & (total > 0), best, UNLABELLED))


def labelled_graph(graph, codes, target_weight, rng, anchors=None):
    """``graph`` with labels folded in.

    Each neighbour of another class than its row (both rows' classes known) is replaced,
    with probability ``target_weight``, by one of the row's neighbours of its own class, or
    where it has none by a row of its class drawn at random. A row whose own label is
    given (``anchors``, a boolean mask) also trades each unlabelled neighbour, with
    probability ``target_weight / 2``, for a labelled row of its class drawn at random, so
    that a class's labelled rows pull together across the graph. ``rng`` (a
    ``numpy.random.Generator``) draws."""
    graph = graph.copy()
    if target_weight == 0:
        return graph
    row_codes = codes[:, None]
    neighbor_codes = codes[graph]
    known = (row_codes != UNLABELLED) & (neighbor_codes != UNLABELLED)
    same = known & (neighbor_codes == row_codes)
    crossing = known & (neighbor_codes != row_codes) & (rng.random(graph.shape) < target_weight)
    anchors = np.zeros(len(codes), dtype=bool) if anchors is None else anchors
    to_anchor = anchors[:, None] & (neighbor_codes == UNLABELLED) & (rng.random(graph.shape) < target_weight / 2)
    members = {c: np.flatnonzero(codes == c) for c in np.unique(codes[codes != UNLABELLED])}
    labelled_members = {c: np.flatnonzero(anchors & (codes == c)) for c in members}
    for i in np.flatnonzero((crossing | to_anchor).any(axis=1)):
        own = graph[i, same[i]]
        for chosen, pool in ((crossing[i], own if len(own) else members[codes[i]]),
                             (to_anchor[i], labelled_members[codes[i]])):
            pool = pool[pool != i]  # a row is no neighbour of itself
            if len(pool) and chosen.any():
                graph[i, chosen] = pool[rng.integers(len(pool), size=int(chosen.sum()))]
    return graph
