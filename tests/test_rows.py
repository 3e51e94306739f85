"""Rows as training sees them (cvae.data.rows): reads of scattered rows, chunks shared across
processes, rows on devices."""

import numpy as np
import pytest
import torch

from cvae.data.batches import BatchIterator
from cvae.data.rows import TensorChunks, fits_on_device, take_rows
from cvae.data.inputs import open_source


def test_take_rows_matches_fancy_indexing(rows, tmp_path):
    np.save(tmp_path / "x.npy", rows)
    source = open_source(tmp_path / "x.npy")
    indices = np.array([0, 1, 2, 5, 90, 91, 102])
    np.testing.assert_array_equal(take_rows(source, indices), rows[indices])
    assert take_rows(source, np.array([], dtype=int)).shape == (0, 5)


@pytest.mark.parametrize("n, chunk_size, world_size", [(100, 32, 2), (101, 32, 3), (65, 32, 2), (5, 32, 4)])
def test_shard_chunks_give_every_process_its_part_of_each_chunk(n, chunk_size, world_size):
    from cvae.data.rows import shard_chunks

    parts = [shard_chunks(n, chunk_size, rank, world_size) for rank in range(world_size)]
    assert len({len(p) for p in parts}) == 1  # as many chunks everywhere
    starts = list(range(0, n, chunk_size))
    if len(starts) > 1 and n - starts[-1] < world_size:
        starts.pop()  # a tail of fewer rows than processes joins the chunk before
    for c, (start, stop) in enumerate(zip(starts, starts[1:] + [n])):
        rows = np.concatenate([np.arange(rank, n, world_size)[parts[rank][c]] for rank in range(world_size)])
        np.testing.assert_array_equal(np.sort(rows), np.arange(start, stop))
        assert all(parts[rank][c].stop > parts[rank][c].start for rank in range(world_size))


def test_host_rows_are_gathered_on_the_host_and_delivered_on_the_device():
    data = torch.arange(40.0).view(20, 2)
    neighbors = torch.randint(20, (20, 3))
    meta = torch.device("meta")  # a device that holds shapes only
    on_host = BatchIterator(data, 8, seed=0, neighbors=neighbors)
    expected = [next(on_host) for _ in range(4)]
    delivered = BatchIterator(data, 8, seed=0, neighbors=neighbors, device=meta)
    for rows, neighbor_rows, _ in (next(delivered) for _ in range(4)):
        assert rows.device == meta and neighbor_rows.device == meta
    assert [len(batch.rows) for batch in expected] == [8, 8, 4, 8]  # epochs run where the data lives
    chunks = list(TensorChunks(data, 6, neighbors[:, 0], device=meta))
    assert [chunk.rows.shape for chunk in chunks] == [(6, 2), (6, 2), (6, 2), (2, 2)]
    assert all(chunk.rows.device == meta and chunk.neighbors.device == meta for chunk in chunks)
    assert fits_on_device(10**15, torch.device("cpu"))
