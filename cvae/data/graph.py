"""The neighbour graph of a fit's rows: each row's nearest rows in the normalized data.

For rows in memory and rows streamed from files alike, the graph is searched among the rows
(or their principal components) gathered a chunk at a time, built by the main process
alone under ``torchrun``, kept in the log directory for a continued run, and searched among
a sample of the rows when the step budget visits fewer (:func:`graph_rows`). Labels are
folded in for the batches (:func:`labels_folded`); rows with covariates are linked across
their batches.
"""

import hashlib
from dataclasses import replace

import numpy as np

from .. import _random
from ..neighbors.labels import labelled_graph, spread_labels
from ..neighbors.search import balanced_graph, neighbor_graph, search_rows
from .rows import STREAM_BUFFER_BYTES, iterate_chunks, rows_within, take_rows

__all__ = ["GRAPH_MAX_ROWS", "GRAPH_MIN_ROWS", "graph_rows", "labels_folded", "nearest_rows_among", "rows_graph",
           "training_graph"]

# With the neighbour term, a fit over more rows than its step budget visits trains on a
# seeded sample of as many rows (at least GRAPH_MIN_ROWS, at most GRAPH_MAX_ROWS), and its
# validation on at most GRAPH_MIN_ROWS rows, so that the graphs' time and memory follow the
# budget rather than the file (2,000,000 rows, 300 steps: benchmarks/README.md, "Scale").
GRAPH_MIN_ROWS = 50_000
GRAPH_MAX_ROWS = 1_000_000


def graph_rows(rows, visits, seed):
    """The rows a fit with the neighbour term trains (or validates) on: ``rows``, or when
    they are more than ``visits`` (the rows its step budget draws; 0 for validation
    rows), ``GRAPH_MIN_ROWS`` and ``GRAPH_MAX_ROWS``, a sample of ``min(max(visits,
    GRAPH_MIN_ROWS), GRAPH_MAX_ROWS)`` of them drawn with ``seed``: the same for a run
    continued with the same budget, and more of the same with a larger one."""
    n = min(max(int(visits), GRAPH_MIN_ROWS), GRAPH_MAX_ROWS)
    if len(rows) <= n:
        return rows
    # the first n of one seeded order: a run continued with a larger budget trains on more of the same rows
    chosen = np.sort(_random.rng("graph", seed).permutation(len(rows))[:n])
    digest = None
    if rows.digest is not None:
        digest = hashlib.blake2b(f"{rows.digest}:{seed}:{n}".encode(), digest_size=16).hexdigest()
    return replace(rows, indices=rows.indices[chosen], digest=digest,
                   weights=None if rows.weights is None else rows.weights[chosen],
                   labels=None if rows.labels is None else rows.labels[chosen])


def training_graph(rows, normalize, n_neighbors, device, distributed, graphs=None):
    """Each of ``rows``' ``n_neighbors`` nearest neighbours (positions among them) in the
    data normalized by ``normalize`` (a function of an array), or ``None`` for fewer than 2
    rows. Built by the main process and sent to the others; ``graphs`` (a
    :class:`cvae.training.LogDir`, or ``None``) keeps it for a continued run."""
    if len(rows) < 2:
        return None
    return distributed.share(lambda: _stored_graph(rows, normalize, n_neighbors, device, graphs), device)


def nearest_rows_among(rows, normalize, device, distributed, array=None):
    """Each of ``rows``' nearest other row among them (a position per row): what a
    validation row is paired with. Found by the main process and sent to the others."""
    return distributed.share(lambda: rows_graph(rows, normalize, 1, device, array), device)[:, 0]


def labels_folded(graph, labels, target_weight, seed):
    """``graph`` with each row's neighbours of its own class in the proportion
    ``target_weight`` (:func:`cvae.neighbors.labels.labelled_graph`), the class codes
    ``labels`` (-1 for none) first spread over the graph; ``graph`` as it is without labels."""
    if labels is None or target_weight == 0 or labels.max() < 0:
        return graph
    codes = spread_labels(graph, labels, int(labels.max()) + 1)
    return labelled_graph(graph, codes, target_weight, _random.rng("label_graph", seed), anchors=labels != -1)


def _stored_graph(rows, normalize, n_neighbors, device, graphs):
    """:func:`rows_graph`, read from ``graphs`` when it holds this graph, else built and written there."""
    if graphs is None or rows.digest is None:
        return rows_graph(rows, normalize, n_neighbors, device)
    # The graph depends on the rows' values, their count and the normalization, which a
    # row of ones shows (its scale, and the log of counts).
    key = hashlib.blake2b(digest_size=16)
    for part in (rows.digest, str(n_neighbors), normalize(np.ones((1, rows.source.n_features), np.float32))):
        key.update(np.asarray(part).tobytes())
    graph = graphs.read_neighbor_graph(key.hexdigest(), len(rows))
    if graph is None:
        graph = rows_graph(rows, normalize, n_neighbors, device)
        graphs.write_neighbor_graph(graph, key.hexdigest())
    return graph


def rows_graph(rows, normalize, n_neighbors, device, array=None):
    """Each of ``rows``' nearest neighbours (:func:`cvae.neighbors.search.neighbor_graph`), as
    positions among them, in the data normalized by ``normalize``. Rows in memory are
    searched as they are (``array``, or the sparse source's rows); rows on disk are read a
    buffer at a time into :func:`cvae.neighbors.search.search_rows`."""
    source = rows.source
    if array is None and getattr(source, "sparse", False):
        array = source.block(rows.indices)
    elif array is None and source.in_memory:
        array = rows.read()
    if array is not None:
        searched = normalize(array)
    else:
        chunk_rows = rows_within(STREAM_BUFFER_BYTES, source.n_features)

        def chunks():
            for part in iterate_chunks(len(rows), chunk_rows):
                yield normalize(take_rows(source, rows.indices[part]))

        searched = search_rows(chunks, len(rows), source.n_features)
    groups = getattr(source, "groups", None)
    if groups is not None:  # rows with covariates: linked across their batches
        return balanced_graph(searched, groups[rows.indices], n_neighbors, device=device)
    return neighbor_graph(searched, n_neighbors, device=device)
