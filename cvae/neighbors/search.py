"""Each row's nearest neighbours, found once per fit for the neighbour-preserving option.

An exact search by blocks of rows in torch (on the data's device), or, for many wide rows,
the same search among the rows' first principal components. On a CPU, above
``APPROXIMATE_ROWS`` rows the search is approximate, by pynndescent's nearest-neighbour
descent (the ``neighbors`` extra), whose cost grows about as rows times log rows where the
exact search's grows as rows squared; without pynndescent it stays exact.
"""

import numpy as np
import torch

from .correction import batch_corrected

__all__ = ["APPROXIMATE_ROWS", "EXACT_NEIGHBOR_ROWS", "NEIGHBOR_COMPONENTS", "balanced_graph", "nearest_rows",
           "neighbor_graph", "search_rows"]

# Above this many rows, neighbour graphs of wide data are searched among this many principal
# components (see neighbor_graph).
EXACT_NEIGHBOR_ROWS = 10_000
NEIGHBOR_COMPONENTS = 50
# Above this many rows, a graph searched on the CPU is approximate where pynndescent is
# installed (benchmarks/README.md, "Neighbour graph").
APPROXIMATE_ROWS = 100_000
# A sparse matrix whose dense float32 form takes at most this many bytes is searched dense.
_DENSE_SEARCH_BYTES = 2**28


def neighbor_graph(X, n_neighbors, device=None, method="auto"):
    """Indices of each row's ``n_neighbors`` nearest other rows (Euclidean), as int64.

    Computed once per fit, by blocks of rows on ``device`` (the CPU by default). Above
    ``EXACT_NEIGHBOR_ROWS`` rows of more than ``2 * NEIGHBOR_COMPONENTS`` features, the
    search runs among the rows' first ``NEIGHBOR_COMPONENTS`` principal components (a
    truncated SVD for a sparse ``X``), as t-SNE implementations do: an exact search costs
    rows squared times features, and the projection keeps most of each row's neighbours
    (benchmarks/README.md, "Neighbour graph"). Below that the search is exact. A sparse ``X``
    whose dense form takes at most 256 MB is searched dense, with the dense search's
    arithmetic. With fewer rows than ``n_neighbors + 1``, all other rows are listed.

    ``method``: ``"exact"``, ``"approximate"`` (pynndescent, which must be installed) or
    ``"auto"``: approximate above ``APPROXIMATE_ROWS`` rows on the CPU where pynndescent
    is installed, else exact.
    """
    n = X.shape[0]
    n_neighbors = min(n_neighbors, n - 1)
    if hasattr(X, "toarray") and n * X.shape[1] * 4 <= _DENSE_SEARCH_BYTES:
        X = X.toarray()  # the dense search's arithmetic, so that sparse input trains the dense model
    # float32 whatever the input's dtype or format, so that float64 and float32, dense and
    # sparse rows find the same neighbours; dense rows centred, since the search expands
    # |x - y|^2 as |x|^2 - 2 x.y + |y|^2, which loses the distances of rows far from the origin
    X = X.astype(np.float32) if hasattr(X, "toarray") else _centred(X)
    if n > EXACT_NEIGHBOR_ROWS and X.shape[1] > 2 * NEIGHBOR_COMPONENTS:
        X = _principal_components(X, NEIGHBOR_COMPONENTS)
    device = torch.device("cpu") if device is None else device
    if method == "auto":
        method = "approximate" if n > APPROXIMATE_ROWS and device.type == "cpu" and _has_pynndescent() else "exact"
    if method == "approximate":
        graph = _approximate_nearest_rows(X, n_neighbors + 1)
    else:
        graph = _self_nearest_rows(X, n_neighbors + 1, device)
    # A row is its own nearest neighbour, except among duplicates: drop one copy of itself.
    own = graph == np.arange(n)[:, None]
    own[~own.any(axis=1), -1] = True
    return graph[~own].reshape(n, n_neighbors).astype(np.int64)


def balanced_graph(X, groups, n_neighbors, device=None):
    """Indices of each row's nearest other rows in every group, as int64: ``ceil(n_neighbors
    / n_groups)`` in each (fewer where a group has fewer rows), nearest first within a
    group, groups in order.

    A batch-balanced graph, as BBKNN builds (Polanski et al. 2020): rows of one batch
    (``groups``, an integer per row) are linked to the rows most like them in every other
    batch, so that a neighbour-preserving embedding mixes batches where the rows match.
    Rows of more than ``2 * NEIGHBOR_COMPONENTS`` features are searched among their first
    ``NEIGHBOR_COMPONENTS`` principal components, where rows of different batches match
    better than in the full space (benchmarks/README.md, "Covariates"), and the batches'
    offsets are removed from the searched rows first (:func:`cvae.neighbors.correction.
    batch_corrected`, Harmony's correction), so that a row's neighbours in another batch
    are the rows of its kind there rather than the edge of that batch nearest its own.
    Exact, by blocks of rows on ``device``.
    """
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = _centred(X)
    if X.shape[1] > 2 * NEIGHBOR_COMPONENTS and X.shape[0] > NEIGHBOR_COMPONENTS:
        X = _principal_components(X, NEIGHBOR_COMPONENTS)
    X = batch_corrected(X, groups)
    device = torch.device("cpu") if device is None else device
    rows = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device)
    groups = np.asarray(groups)
    distinct = np.unique(groups)
    per_group = -(-n_neighbors // len(distinct))
    columns = []
    for group in distinct:
        members = np.flatnonzero(groups == group)
        k = min(per_group, len(members) - 1)
        if k < 1:
            continue
        # k + 1 found, so that a member can drop itself and keep k
        found = nearest_rows(rows, rows[torch.from_numpy(members).to(device)], k + 1)[1].cpu().numpy()
        found = members[found]
        own = found == np.arange(len(found))[:, None]
        own[~own.any(axis=1), -1] = True  # a non-member (or a duplicate) drops its farthest
        columns.append(found[~own].reshape(len(found), k))
    if not columns:
        return neighbor_graph(X, n_neighbors, device)
    return np.concatenate(columns, axis=1).astype(np.int64)


def search_rows(chunks, n_rows, n_features):
    """The rows :func:`neighbor_graph` searches among, built from data read a chunk at a time.

    ``chunks()`` yields the rows in order as float arrays and may be called twice. The rows
    themselves (float32) are kept when :func:`neighbor_graph` would search them unprojected:
    at most ``EXACT_NEIGHBOR_ROWS`` rows or ``2 * NEIGHBOR_COMPONENTS`` features. Wider rows
    are projected onto their first ``NEIGHBOR_COMPONENTS`` principal components, found by an
    incremental PCA over one pass and applied in a second, so memory holds one chunk and the
    ``n_rows x NEIGHBOR_COMPONENTS`` projection, never the rows.
    """
    if n_rows <= EXACT_NEIGHBOR_ROWS or n_features <= 2 * NEIGHBOR_COMPONENTS:
        out = np.empty((n_rows, n_features), dtype=np.float32)
        project = None
    else:
        from sklearn.decomposition import IncrementalPCA

        pca = IncrementalPCA(NEIGHBOR_COMPONENTS)
        pending = []
        for chunk in chunks():  # each partial fit needs at least n_components rows
            pending.append(np.asarray(chunk, dtype=np.float32))
            if sum(map(len, pending)) >= 4 * NEIGHBOR_COMPONENTS:
                pca.partial_fit(np.concatenate(pending))
                pending = []
        if sum(map(len, pending)) >= NEIGHBOR_COMPONENTS:  # a shorter tail is left out of the fit
            pca.partial_fit(np.concatenate(pending))
        out = np.empty((n_rows, NEIGHBOR_COMPONENTS), dtype=np.float32)
        project = pca.transform
    start = 0
    for chunk in chunks():
        out[start : start + len(chunk)] = chunk if project is None else project(chunk)
        start += len(chunk)
    if start != n_rows:
        raise ValueError(f"the data gave {start} rows where {n_rows} were expected.")
    return out


def _centred(X, block=65536):
    """A float32 copy of ``X`` less its column means (summed in float64), a block of rows at a time."""
    mean = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block):
        mean += np.asarray(X[start : start + block], dtype=np.float64).sum(axis=0)
    mean /= max(X.shape[0], 1)
    out = np.empty(X.shape, dtype=np.float32)
    for start in range(0, X.shape[0], block):
        out[start : start + block] = np.asarray(X[start : start + block], dtype=np.float64) - mean
    return out


def _has_pynndescent():
    import importlib.util

    return importlib.util.find_spec("pynndescent") is not None


def _approximate_nearest_rows(X, k):
    """Each row's ``k`` nearest rows (itself among them), nearest first, by pynndescent."""
    try:
        from pynndescent import NNDescent
    except ImportError as exc:
        raise ImportError("An approximate neighbour graph needs pynndescent: pip install pynndescent") from exc
    # Descending with twice the neighbours and keeping the nearest half raises recall more
    # than its cost (benchmarks/README.md, "Neighbour graph").
    index = NNDescent(X, n_neighbors=2 * k, random_state=0, n_jobs=1, low_memory=True, compressed=True)
    return index.neighbor_graph[0][:, :k].astype(np.int64)


def _principal_components(X, n_components):
    from scipy import sparse
    from sklearn.decomposition import PCA, TruncatedSVD

    reducer = TruncatedSVD if sparse.issparse(X) else PCA
    return reducer(n_components, random_state=0).fit_transform(X).astype(np.float32)


def nearest_rows(queries, reference, k):
    """Squared distances and indices of each query row's ``k`` nearest reference rows,
    nearest first: tensors of shape ``(n_queries, k)`` on the tensors' device, found by
    blocks of queries (the benchmarks' exact recall)."""
    k = min(k, len(reference))
    reference_norms = reference.square().sum(dim=1)
    block = max(1, 2**25 // max(len(reference), 1))
    distances, indices = [], []
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        squared = torch.addmm(reference_norms[None, :], rows, reference.T, alpha=-2)
        found = squared.topk(k, dim=1, largest=False)
        distances.append((found.values + rows.square().sum(dim=1, keepdim=True)).clamp_min(0))
        indices.append(found.indices)
    return torch.cat(distances), torch.cat(indices)


def _self_nearest_rows(X, k, device):
    """Indices of each row's ``k`` nearest rows, itself included, nearest first."""
    from scipy import sparse

    n = X.shape[0]
    is_sparse = sparse.issparse(X)
    if is_sparse:
        X = X.tocsr()
        squared_norms = torch.from_numpy(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    else:
        rows = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device)
        squared_norms = rows.square().sum(dim=1)
    squared_norms = squared_norms.to(device)
    # Rows per block: about 2**25 distances at a time (2**28 on a GPU, where fewer, larger
    # blocks keep it busy). A row's own squared norm is the same for all its candidates, so
    # ranking by |x_j|^2 - 2 x_i.x_j ranks the distances.
    block = max(1, (2**28 if device.type == "cuda" else 2**25) // n)
    graph = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        if is_sparse:
            products = torch.from_numpy((X[start:stop] @ X.T).toarray()).to(device)
            distances = squared_norms[None, :] - 2 * products
        else:
            distances = torch.addmm(squared_norms[None, :], rows[start:stop], rows.T, alpha=-2)
        graph[start:stop] = distances.topk(k, dim=1, largest=False).indices.cpu().numpy()
    return graph
