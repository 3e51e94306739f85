"""Class labels for ``fit(X, y)``: checked, spread to unlabelled rows, and folded into the
neighbour graph that the neighbour term trains on.

Labels act through the graph, as UMAP's supervised mode does (it intersects the data's
graph with one of the labels): a row's neighbours of another class are replaced, in the
proportion ``target_weight``, by neighbours of its own class, so that classes part in
the embedding while a row keeps the neighbours the data gives it within its class. A row
without a label takes the class that spreads to it over the graph from the labelled
rows (Zhou et al., 2004, as scikit-learn's ``LabelSpreading`` does), where that class is
clear.
"""

import os
import sys

import numpy as np
import scipy.sparse as sp

from .adata import obs_labels
from .files import read_labels

__all__ = ["UNLABELLED", "check_labels", "check_saved_classes", "fit_labels", "labelled_graph", "spread_labels"]

# How an unlabelled row is marked among integer labels, as in scikit-learn's
# semi-supervised estimators; among string or object labels, None marks one.
UNLABELLED = -1
# Label spreading: how much a row keeps of what its neighbours pass it, per iteration, and
# how sure the spread must be (the share of the row's spread mass on one class) for an
# unlabelled row to take that class.
_SPREAD_ALPHA = 0.9
_SPREAD_ITERATIONS = 30
_SPREAD_CONFIDENCE = 0.8


def fit_labels(X, y):
    """``y`` as given to ``fit``, as an array: as given, the labels in the file it names
    (:func:`cvae.files.read_labels`), or, for an AnnData ``X``, the column of ``X.obs`` it
    names, as scANVI's ``labels_key`` (missing values mark unlabelled rows)."""
    if not isinstance(y, (str, os.PathLike)):
        return y
    anndata = sys.modules.get("anndata")  # an AnnData exists only where anndata was imported
    if isinstance(y, str) and anndata is not None and isinstance(X, anndata.AnnData):
        return obs_labels(X, y)
    return read_labels(y)


def check_labels(y, n_samples, classes=None):
    """``(classes, codes)``: the sorted classes of ``y`` and each row's index among them,
    ``-1`` for an unlabelled row.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Integer class labels with ``-1`` for unlabelled rows, or string or object labels
        with ``None`` for unlabelled rows. Floats that are whole numbers count as integers.
        Whatever the type, ``None``, NaN (pandas' ``NA`` too), -1, and the texts ``""``,
        ``"-1"`` and ``"nan"`` mark an unlabelled row.
    n_samples : int
        Rows of ``X``.
    classes : ndarray, default=None
        The classes of the run being continued: ``y`` may hold no others.

    Raises
    ------
    ValueError
        For a ``y`` of another length or shape, continuous values, no labelled row, or
        classes that the continued run did not have.
    """
    values = np.asarray(y)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"y must be one label per row of X, a 1-D array; got shape {values.shape}.")
    if len(values) != n_samples:
        raise ValueError(f"y has {len(values)} labels, but X has {n_samples} rows.")
    if values.dtype.kind == "b":
        values = values.astype(np.int64)
    values = _with_missing_marked(values)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all() or np.any(np.mod(values, 1) != 0):
            raise ValueError(
                "y holds values that are not whole numbers: CompressionVAE takes class labels (integers, with -1 "
                "for unlabelled rows, or strings), not continuous targets."
            )
        values = values.astype(np.int64)
    if values.dtype.kind in "iu":
        labelled = values != UNLABELLED
    elif values.dtype.kind in "UO":
        labelled = np.array([v is not None for v in values], dtype=bool)
        if values.dtype.kind == "O":
            kinds = {type(v) for v in values[labelled]}
            if any(not issubclass(k, (str, np.str_)) for k in kinds) and len(kinds) > 1:
                raise ValueError(f"y mixes label types ({', '.join(sorted(k.__name__ for k in kinds))}); use one.")
    else:
        raise ValueError(f"y holds {values.dtype} values; class labels must be integers or strings.")
    if not labelled.any():
        raise ValueError("y marks every row unlabelled (-1 or None): there are no labels to fit; pass y=None.")
    found = np.unique(values[labelled])
    if classes is None:
        classes = found
    else:
        unknown = np.setdiff1d(found, classes)
        if len(unknown):
            raise ValueError(
                f"y holds classes the run being continued did not have: {', '.join(map(repr, unknown[:5].tolist()))}"
                f"; its classes are {', '.join(map(repr, classes[:10].tolist()))}."
            )
    codes = np.full(n_samples, UNLABELLED, dtype=np.int64)
    codes[labelled] = np.searchsorted(classes, values[labelled])
    return classes, codes


def _is_missing(value):
    """Whether a label marks an unlabelled row: ``None``, NaN (float, pandas' ``NA``, a
    categorical's missing value), the integer -1, or the text ``""``, ``"-1"`` or ``"nan"``
    (as a text file writes them)."""
    if value is None or type(value).__name__ == "NAType":
        return True
    if isinstance(value, (str, np.str_)):
        return value.strip().lower() in ("", "-1", "nan")
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value)) or value == UNLABELLED
    return isinstance(value, (int, np.integer)) and value == UNLABELLED


def _with_missing_marked(values):
    """``values`` with every missing label (:func:`_is_missing`) as -1 among integer labels
    (floats: NaN -> -1) or ``None`` among string labels; object labels that are all whole
    numbers become integers."""
    if values.dtype.kind == "f":
        return np.where(np.isnan(values), UNLABELLED, values)
    if values.dtype.kind not in "UO":
        return values
    missing = np.array([_is_missing(v) for v in values], dtype=bool)
    present = values[~missing]
    numbers = all(isinstance(v, (int, np.integer, float, np.floating)) and not isinstance(v, (bool, np.bool_))
                  and float(v).is_integer() for v in present)
    if numbers and len(present):
        out = np.full(len(values), UNLABELLED, dtype=np.int64)
        out[~missing] = present.astype(np.int64)
        return out
    out = values.astype(object)
    out[missing] = None
    return out


def check_saved_classes(classes, logdir=None):
    """The classes a checkpoint holds (a list of distinct strings or of distinct integers,
    sorted) as an array; ``ValueError`` naming the checkpoint when they are damaged."""
    kinds = (str,) if classes and isinstance(classes[0], str) else (int,)
    valid = (isinstance(classes, list) and len(classes) > 0
             and all(isinstance(c, kinds) and not isinstance(c, bool) for c in classes)
             and classes == sorted(set(classes)))
    if not valid:
        where = "the checkpoint" if logdir is None else f"the checkpoint in {str(logdir)!r}"
        raise ValueError(f"Cannot read {where}: its classes are damaged ({str(classes)[:80]}).")
    return np.asarray(classes)


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


def labelled_graph(graph, codes, target_weight, seed, anchors=None):
    """``graph`` with labels folded in.

    Each neighbour of another class than its row (both rows' classes known) is replaced,
    with probability ``target_weight``, by one of the row's neighbours of its own class, or
    where it has none by a row of its class drawn at random. A row whose own label is
    given (``anchors``, a boolean mask) also trades each unlabelled neighbour, with
    probability ``target_weight / 2``, for a labelled row of its class drawn at random, so
    that a class's labelled rows pull together across the graph."""
    graph = graph.copy()
    if target_weight == 0:
        return graph
    rng = np.random.default_rng(seed)
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
