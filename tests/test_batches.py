"""Shuffled training batches: sharding like DistributedSampler, streaming from files, resuming, neighbour pairs."""

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from cvae.data.batches import BatchIterator, StreamingBatches, local_batch_size, shard_permutation
from cvae.data.inputs import open_source


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
