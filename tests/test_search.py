"""Neighbour search (cvae.neighbors.search): exact, among principal components, approximate,
batch-balanced, and searched from files."""

import numpy as np
import pytest


def test_neighbor_graph_lists_the_nearest_other_rows():
    from cvae.neighbors.search import neighbor_graph

    X = np.random.default_rng(0).normal(size=(60, 3))
    X[7] = X[8]  # duplicates: each is the other's nearest neighbour, never itself
    graph = neighbor_graph(X, 4)
    distances = np.linalg.norm(X[:, None] - X[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    # Rows 7 and 8 tie as anyone's neighbour, so the distances are compared, not the indices.
    listed = np.sort(np.take_along_axis(distances, graph, axis=1), axis=1)
    np.testing.assert_allclose(listed, np.sort(distances, axis=1)[:, :4])
    assert all(len(set(row)) == 4 and i not in row for i, row in enumerate(graph))
    assert graph[7, 0] == 8 and graph[8, 0] == 7
    assert neighbor_graph(X[:3], 15).shape == (3, 2)  # fewer rows than neighbours: all others


def test_a_large_wide_neighbor_graph_is_searched_among_principal_components(monkeypatch):
    from cvae.neighbors import search as neighbor_search

    rng = np.random.default_rng(0)
    latent = np.repeat(rng.normal(scale=5, size=(4, 8)), 60, axis=0) + rng.normal(size=(240, 8))
    X = (latent @ rng.normal(size=(8, 40)) + rng.normal(scale=0.05, size=(240, 40))).astype(np.float32)
    exact = neighbor_search.neighbor_graph(X, 5)
    projections = []
    project = neighbor_search._principal_components
    monkeypatch.setattr(neighbor_search, "_principal_components", lambda *a: projections.append(a[1]) or project(*a))
    assert neighbor_search.neighbor_graph(X, 5) is not None and projections == []  # 240 rows: exact
    monkeypatch.setattr(neighbor_search, "EXACT_NEIGHBOR_ROWS", 100)
    monkeypatch.setattr(neighbor_search, "NEIGHBOR_COMPONENTS", 8)
    projected = neighbor_search.neighbor_graph(X, 5)
    assert projections == [8] and projected.shape == (240, 5)
    # The rows lie near an 8-dimensional subspace: its 8 components keep most neighbours.
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact, projected)])
    assert overlap > 0.8


def test_large_graphs_on_the_cpu_are_approximate_where_pynndescent_is_installed(monkeypatch):
    pytest.importorskip("pynndescent")
    from cvae.neighbors import search as neighbor_search

    rng = np.random.default_rng(0)
    X = (np.repeat(rng.normal(scale=4, size=(10, 6)), 300, axis=0) + rng.normal(size=(3000, 6))).astype(np.float32)
    exact = neighbor_search.neighbor_graph(X, 15)
    chosen = []
    search = neighbor_search._approximate_nearest_rows
    monkeypatch.setattr(neighbor_search, "_approximate_nearest_rows", lambda *a: chosen.append(1) or search(*a))
    assert np.array_equal(neighbor_search.neighbor_graph(X, 15), exact) and chosen == []  # 3,000 rows: exact
    monkeypatch.setattr(neighbor_search, "APPROXIMATE_ROWS", 1000)
    approximate = neighbor_search.neighbor_graph(X, 15)
    assert chosen == [1] and approximate.shape == (3000, 15)
    assert all(i not in row for i, row in enumerate(approximate))
    recall = np.mean([len(np.intersect1d(a, b)) / 15 for a, b in zip(approximate, exact)])
    assert recall > 0.9
    assert np.array_equal(neighbor_search.neighbor_graph(X, 15, method="approximate"), approximate)  # seeded


def test_search_rows_keeps_narrow_rows_and_projects_wide_ones_a_chunk_at_a_time(monkeypatch):
    from cvae.neighbors import search as neighbor_search

    rng = np.random.default_rng(0)
    latent = np.repeat(rng.normal(scale=5, size=(4, 8)), 60, axis=0) + rng.normal(size=(240, 8))
    X = (latent @ rng.normal(size=(8, 40)) + rng.normal(scale=0.05, size=(240, 40))).astype(np.float32)
    passes = []

    def chunks():
        passes.append(1)
        return (X[start : start + 30] for start in range(0, 240, 30))

    np.testing.assert_array_equal(neighbor_search.search_rows(chunks, 240, 40), X)  # few rows: as they are
    assert len(passes) == 1
    monkeypatch.setattr(neighbor_search, "EXACT_NEIGHBOR_ROWS", 100)
    monkeypatch.setattr(neighbor_search, "NEIGHBOR_COMPONENTS", 8)
    projected = neighbor_search.search_rows(chunks, 240, 40)
    assert projected.shape == (240, 8) and projected.dtype == np.float32 and len(passes) == 3  # fit, then project
    # the incremental PCA of the chunks finds the rows' 8-dimensional subspace, as PCA does
    exact = neighbor_search.neighbor_graph(X, 5, method="exact")
    found = neighbor_search.neighbor_graph(projected, 5)
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact, found)]) > 0.8
    with pytest.raises(ValueError, match="gave 240 rows where 241 were expected"):
        neighbor_search.search_rows(chunks, 241, 40)


def listed_distances(X, graph):
    """Each row's distances (float64) to the rows ``graph`` lists, sorted: equal for two graphs
    that differ only among rows at equal distances."""
    X = np.asarray(X, dtype=np.float64)
    return np.sort(np.linalg.norm(X[:, None] - X[graph], axis=2), axis=1)


def exact_distances(X, k):
    X = np.asarray(X, dtype=np.float64)
    distances = np.linalg.norm(X[:, None] - X[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, :k]


@pytest.mark.parametrize("offset", [1e3, 1e5])
def test_rows_far_from_the_origin_find_their_neighbours(offset):
    """Blobs of standard deviation 1 offset by ``offset``: |x|^2 - 2x.y + |y|^2 in float32 on the
    raw rows gave recall@15 of 0.85 at 1e3 and 0.04 at 1e5; centred, the search is exact."""
    from cvae.neighbors.search import neighbor_graph

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10)) + np.repeat(rng.normal(scale=5, size=(3, 10)), 100, axis=0) + offset
    X = X.astype(np.float32)  # as the fit's normalization hands rows to the search
    np.testing.assert_allclose(listed_distances(X, neighbor_graph(X, 15)), exact_distances(X, 15), rtol=1e-4)


def test_the_default_model_keeps_neighbourhoods_of_offset_data():
    from sklearn.neighbors import KNeighborsClassifier

    from cvae import CompressionVAE

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 150)
    X = (rng.normal(size=(600, 8)) + 4 * np.eye(8)[y] + 1e5).astype(np.float32)
    Z = CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=300, random_state=0).fit_transform(X)
    # the random graph the raw rows gave: 10-NN 0.39 on such blobs
    assert KNeighborsClassifier(10).fit(Z[::2], y[::2]).score(Z[1::2], y[1::2]) > 0.9


def test_the_graph_does_not_depend_on_offset_dtype_or_format():
    """A property: adding a constant to every row, float32 or float64, dense or CSR, the same
    neighbours up to rows at equal distances."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings, strategies as st
    from scipy import sparse

    from cvae.neighbors.search import neighbor_graph

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(seed=st.integers(0, 2**31 - 1), n=st.integers(20, 80), d=st.integers(1, 12),
           offset=st.sampled_from([0.0, -7.5, 1e3, 1e5]), k=st.integers(1, 10))
    def check(seed, n, d, offset, k):
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=d)
        X[rng.random(X.shape) < 0.3] = 0  # some zeros, as sparse rows have
        expected = exact_distances(X, k)
        variants = {"float64": X, "float32": X.astype(np.float32), "csr64": sparse.csr_matrix(X),
                    "csr32": sparse.csr_matrix(X.astype(np.float32)), "offset64": X + offset}
        for name, rows in variants.items():
            found = listed_distances(X, neighbor_graph(rows, k))
            np.testing.assert_allclose(found, expected, rtol=1e-4, atol=1e-5, err_msg=name)
        shifted = (X + offset).astype(np.float32)  # float32 keeps fewer digits of each row far out
        found = listed_distances(shifted, neighbor_graph(shifted, k))
        np.testing.assert_allclose(found, exact_distances(shifted, k), rtol=1e-4, atol=1e-3 + 1e-7 * offset,
                                   err_msg="offset32")

    assert hypothesis is not None
    check()


def test_a_balanced_graph_links_every_row_to_its_nearest_rows_in_every_group():
    from cvae.neighbors.correction import batch_corrected
    from cvae.neighbors.search import balanced_graph

    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3))
    groups = np.repeat([0, 1, 2], 30)
    X[groups == 1] += 100  # far apart: an unbalanced graph would never leave a group
    graph = balanced_graph(X, groups, 6)
    assert graph.shape == (90, 6)
    assert (groups[graph] == np.repeat([[0, 0, 1, 1, 2, 2]], 90, axis=0)).all()  # 2 per group, groups in order
    assert not (graph == np.arange(90)[:, None]).any()  # never a row itself
    # nearest in the space the groups' offsets are removed from
    searched = batch_corrected(X - X.mean(axis=0), groups).astype(np.float64)
    distances = np.linalg.norm(searched[:, None] - searched[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    for group in range(3):
        members = np.flatnonzero(groups == group)
        nearest = np.sort(np.sort(distances[:, members], axis=1)[:, :2], axis=1)
        listed = np.sort(np.take_along_axis(distances, graph[:, 2 * group : 2 * group + 2], axis=1), axis=1)
        np.testing.assert_allclose(listed, nearest, rtol=1e-4)
