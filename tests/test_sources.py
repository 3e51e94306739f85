"""Row sources on disk, sharded and streamed batches, streaming statistics."""

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DistributedSampler

from cvae.data import BatchIterator, StreamingBatches, local_batch_size, shard_permutation, take_rows
from cvae.preprocessing import normalization_statistics, summarize
from cvae.inputs import open_source
from cvae.sources import ArraySource, NpyDirectorySource, RawFileSource


@pytest.fixture
def rows():
    return np.random.default_rng(0).normal(size=(103, 5)).astype(np.float32)


def _save_shards(root, X, sizes):
    """Save ``X`` as .npy files of ``sizes`` rows (0 means one vector) in nested folders."""
    start = 0
    for i, size in enumerate(sizes):
        folder = root / f"part{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i:03d}.npy", X[start] if size == 0 else X[start : start + size])
        start += max(size, 1)
    assert start == len(X)
    return sorted(root.rglob("*.npy"))


def test_npy_file_source_reads_any_range(rows, tmp_path):
    np.save(tmp_path / "x.npy", rows)
    source = open_source(tmp_path / "x.npy")
    assert isinstance(source, RawFileSource)
    assert (source.n_samples, source.n_features, source.dtype) == (103, 5, np.float32)
    for start, stop in [(0, 103), (7, 8), (50, 99), (103, 103)]:
        np.testing.assert_array_equal(source.read(start, stop), rows[start:stop])


def test_directory_source_reads_across_file_boundaries(rows, tmp_path):
    files = _save_shards(tmp_path, rows, [10, 0, 0, 40, 1, 50])
    expected = np.concatenate([np.atleast_2d(np.load(f)) for f in files])  # sorted path order
    source = open_source(tmp_path)
    assert isinstance(source, NpyDirectorySource)
    assert source.n_samples == 103
    for start, stop in [(0, 103), (9, 13), (11, 60), (60, 103), (102, 103)]:
        np.testing.assert_array_equal(source.read(start, stop), expected[start:stop])


def test_directory_of_mixed_dtypes_reads_a_common_dtype(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.uint8).reshape(2, 3))
    np.save(tmp_path / "b.npy", np.full((1, 3), 0.5, dtype=np.float32))
    source = open_source(tmp_path)
    np.testing.assert_array_equal(source.read(0, 3), [[0, 1, 2], [3, 4, 5], [0.5, 0.5, 0.5]])
    assert source.dtype == np.float32


def test_memmap_owning_its_map_is_read_from_its_file_and_views_through_the_map(rows, tmp_path):
    path = tmp_path / "raw.dat"
    header = b"0123456789"  # data that starts at an offset that is not page aligned
    path.write_bytes(header + rows.tobytes())
    mm = np.memmap(path, dtype=np.float32, mode="r", offset=len(header), shape=rows.shape)
    source = open_source(mm)
    assert isinstance(source, RawFileSource)
    np.testing.assert_array_equal(source.read(3, 30), rows[3:30])
    view = open_source(mm[10:])
    assert isinstance(view, ArraySource) and not view.in_memory
    np.testing.assert_array_equal(view.read(0, 5), rows[10:15])
    assert open_source(rows) is None  # plain arrays are validated as arrays


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda p: (p / "d").mkdir(), ValueError, "No .npy files found"),
        (lambda p: np.save(p / "s.npy", np.array([["a", "b"]])), ValueError, "holds strings"),
        (lambda p: np.save(p / "o.npy", np.array([[{}]], dtype=object), allow_pickle=True), ValueError,
         "holds Python objects"),
        (lambda p: np.save(p / "c.npy", np.zeros((2, 2, 2))), ValueError, r"shape \(2, 2, 2\)"),
        (lambda p: (p / "x.csv").write_text("1,2\n"), ValueError, "read_array"),
        (lambda p: (p / "bad.npy").write_bytes(b"not an npy file"), ValueError, "not a valid .npy file"),
    ],
    ids=["empty directory", "strings", "objects", "3-D", "csv", "garbage"],
)
def test_bad_files_are_refused_with_a_clear_error(tmp_path, make, error, match):
    make(tmp_path)
    target = next(iter(sorted(tmp_path.iterdir())))
    with pytest.raises(error, match=match):
        open_source(target)


def test_directory_with_different_widths_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((2, 3)))
    np.save(tmp_path / "b.npy", np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"different numbers of features: \[3, 4\]"):
        open_source(tmp_path)


def test_truncated_file_is_reported(rows, tmp_path):
    np.save(tmp_path / "x.npy", rows)
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="shorter than its header says"):
        open_source(tmp_path / "x.npy").read(0, 103)


def test_take_rows_matches_fancy_indexing(rows, tmp_path):
    np.save(tmp_path / "x.npy", rows)
    source = open_source(tmp_path / "x.npy")
    indices = np.array([0, 1, 2, 5, 90, 91, 102])
    np.testing.assert_array_equal(take_rows(source, indices), rows[indices])
    assert take_rows(source, np.array([], dtype=int)).shape == (0, 5)


@pytest.mark.parametrize("n, world_size", [(10, 1), (10, 3), (2, 4), (1000, 2)])
def test_shard_permutation_deals_what_distributed_sampler_deals(n, world_size):
    for epoch in (0, 3):
        for rank in range(world_size):
            sampler = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=True, seed=7)
            sampler.set_epoch(epoch)
            assert shard_permutation(n, 7, epoch, rank, world_size).tolist() == list(sampler)


def test_local_batch_sizes_add_up_to_the_batch_size():
    for batch_size, world_size in [(128, 1), (128, 2), (10, 3), (2, 4)]:
        sizes = [local_batch_size(batch_size, r, world_size) for r in range(world_size)]
        assert sum(sizes) == batch_size and max(sizes) - min(sizes) <= 1


def _epoch_rows(batches, n_batches):
    return np.concatenate([next(batches).rows.numpy() for _ in range(n_batches)])


def test_streaming_batches_visit_every_row_once_per_epoch(tmp_path):
    X = np.arange(1000, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)
    np.save(tmp_path / "x.npy", X)
    indices = np.setdiff1d(np.arange(1000), [3, 500, 501])
    # A 1 KB buffer holds 64 rows: 16 blocks of 4 rows, so an epoch is many buffers.
    batches = StreamingBatches(open_source(tmp_path / "x.npy"), indices, 10, seed=0, device=torch.device("cpu"),
                               buffer_bytes=1024)
    assert len(batches.blocks) > 16
    first = _epoch_rows(batches, 100)[:, 0]  # 99 batches of 10 and the epoch's last 7 rows
    np.testing.assert_array_equal(np.sort(first), indices)
    assert not np.array_equal(first, indices)  # shuffled
    second = _epoch_rows(batches, 100)[:, 0]
    np.testing.assert_array_equal(np.sort(second), indices)
    assert not np.array_equal(first, second)  # a new order each epoch


def test_streaming_shards_of_two_processes_cover_the_rows_once(tmp_path):
    X = np.arange(640, dtype=np.float32)[:, None]
    np.save(tmp_path / "x.npy", X)
    source = open_source(tmp_path / "x.npy")
    shards = [
        _epoch_rows(StreamingBatches(source, np.arange(640), 8, 1, torch.device("cpu"), rank, 2, buffer_bytes=64), 40)
        for rank in (0, 1)
    ]
    np.testing.assert_array_equal(np.sort(np.concatenate(shards)[:, 0]), np.arange(640))


def test_streaming_batches_resume_exactly_from_their_state(tmp_path):
    X = np.random.default_rng(1).normal(size=(500, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    source = open_source(tmp_path / "x.npy")

    def make():
        return StreamingBatches(source, np.arange(500), 16, 5, torch.device("cpu"), buffer_bytes=256)

    batches = make()
    for _ in range(47):  # into the second epoch, mid-buffer
        next(batches)
    state = batches.state_dict()
    expected = _epoch_rows(batches, 30)
    resumed = make()
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(_epoch_rows(resumed, 30), expected)


def test_data_in_one_buffer_is_batched_exactly_as_in_memory(rows, tmp_path):
    np.save(tmp_path / "x.npy", rows)
    indices = np.arange(0, 103, 2)
    streamed = StreamingBatches(open_source(tmp_path / "x.npy"), indices, 8, 3, torch.device("cpu"))
    in_memory = BatchIterator(torch.from_numpy(rows[indices]), 8, 3)
    for _ in range(20):  # three epochs
        torch.testing.assert_close(next(streamed), next(in_memory), rtol=0, atol=0)


def test_batch_iterator_resumes_from_epoch_and_position():
    data = torch.arange(50.0)[:, None]
    batches = BatchIterator(data, 7, seed=2)
    for _ in range(9):
        next(batches)
    resumed = BatchIterator(data, 7, seed=2)
    resumed.load_state_dict(batches.state_dict())
    for _ in range(10):
        torch.testing.assert_close(next(resumed), next(batches))


def test_streaming_statistics_match_the_in_memory_ones():
    # A large mean next to a small spread is where a naive sum of squares loses digits.
    X = np.random.default_rng(0).normal(loc=1000.0, scale=0.5, size=(20000, 6)).astype(np.float32)
    X[:, 3] = 7.0  # a constant feature
    summary = summarize(np.array_split(X, 37))
    reference = StandardScaler().fit(X)
    np.testing.assert_allclose(summary.scaler.mean_, reference.mean_, rtol=1e-6)
    np.testing.assert_allclose(summary.scaler.var_, reference.var_, rtol=1e-6, atol=1e-12)
    for method in ("global", "feature", "none"):
        for got, want in zip(summary.normalization(method), normalization_statistics(X, method)):
            np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (summary.low, summary.high, summary.n_samples) == (X.min(), X.max(), 20000)


def test_neighbor_graph_lists_the_nearest_other_rows():
    from cvae.neighbor_search import neighbor_graph

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
    from cvae import neighbor_search

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


def test_batches_with_neighbors_pair_each_row_with_one_of_its_neighbors():
    data = torch.arange(20.0)[:, None]
    neighbors = torch.stack([(torch.arange(20) + 1) % 20, (torch.arange(20) + 2) % 20], dim=1)
    torch.manual_seed(0)
    rows, paired, weights = next(BatchIterator(data, 8, seed=0, neighbors=neighbors))
    assert weights is None
    offset = (paired - rows)[:, 0] % 20
    assert set(offset.tolist()) <= {1.0, 2.0} and len(set(offset.tolist())) == 2


def test_batches_draw_neighbor_samples_neighbors_per_row_in_blocks():
    data = torch.arange(20.0)[:, None]
    neighbors = torch.stack([(torch.arange(20) + k) % 20 for k in (1, 2, 3)], dim=1)
    torch.manual_seed(0)
    rows, paired, _ = next(BatchIterator(data, 8, seed=0, neighbors=neighbors, neighbor_samples=4))
    assert paired.shape == (32, 1)
    offset = (paired - rows.repeat(4, 1))[:, 0] % 20  # block k pairs row i with a neighbour of row i
    assert set(offset.tolist()) == {1.0, 2.0, 3.0}


def test_large_graphs_on_the_cpu_are_approximate_where_pynndescent_is_installed(monkeypatch):
    pytest.importorskip("pynndescent")
    from cvae import neighbor_search

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
    from cvae import neighbor_search

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


def test_streaming_batches_bring_each_rows_neighbours_from_the_file(tmp_path):
    X = np.arange(300, dtype=np.float32)[:, None] * np.ones((1, 4), np.float32)  # a row's values are its number
    np.save(tmp_path / "x.npy", X)
    indices = np.arange(0, 300, 2)  # positions in indices: row 2p
    graph = np.random.default_rng(0).integers(len(indices), size=(len(indices), 3))
    batches = StreamingBatches(open_source(tmp_path / "x.npy"), indices, 16, 0, torch.device("cpu"),
                               buffer_bytes=256, neighbors=graph, neighbor_samples=2)
    assert len(batches.blocks) > 16  # many buffers an epoch
    for _ in range(25):  # into the second epoch
        rows, neighbors, weights = next(batches)
        assert weights is None and neighbors.shape == (2 * len(rows), 4)
        positions = rows[:, 0].long().numpy() // 2
        for block in range(2):  # block k holds one neighbour of every row, in the rows' order
            listed = neighbors[block * len(rows) : (block + 1) * len(rows), 0].long().numpy()
            assert all(n in indices[graph[p]] for p, n in zip(positions, listed))


@pytest.mark.parametrize("n, chunk_size, world_size", [(100, 32, 2), (101, 32, 3), (65, 32, 2), (5, 32, 4)])
def test_shard_chunks_give_every_process_its_part_of_each_chunk(n, chunk_size, world_size):
    from cvae.data import shard_chunks

    parts = [shard_chunks(n, chunk_size, rank, world_size) for rank in range(world_size)]
    assert len({len(p) for p in parts}) == 1  # as many chunks everywhere
    starts = list(range(0, n, chunk_size))
    if len(starts) > 1 and n - starts[-1] < world_size:
        starts.pop()  # a tail of fewer rows than processes joins the chunk before
    for c, (start, stop) in enumerate(zip(starts, starts[1:] + [n])):
        rows = np.concatenate([np.arange(rank, n, world_size)[parts[rank][c]] for rank in range(world_size)])
        np.testing.assert_array_equal(np.sort(rows), np.arange(start, stop))
        assert all(parts[rank][c].stop > parts[rank][c].start for rank in range(world_size))
