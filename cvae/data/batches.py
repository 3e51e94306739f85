"""What the trainer iterates over: endless shuffled training batches, from rows in memory or
read from a source on disk (:func:`training_batches`), and the validation rows' chunks
(:func:`validation_chunks`).

:class:`BatchIterator` gathers batches from rows in memory (a tensor, usually on the device,
or :class:`cvae.data.rows.SparseRows`); :class:`StreamingBatches` reads them from a row source a
buffer at a time (see :mod:`cvae.data.sources`). Both deal each process of a distributed run its
own shard of every epoch, the way ``torch.utils.data.DistributedSampler`` does, both pair
rows with neighbours drawn the same way, and both resume from ``(epoch, position)``.
"""

import math

import numpy as np
import torch

from .. import _random
from .graph import labels_folded, nearest_rows_among
from .rows import (
    STREAM_BUFFER_BYTES,
    Batch,
    SourceChunks,
    SparseRows,
    TensorChunks,
    fits_on_device,
    gather_rows,
    row_runs,
    rows_within,
    shard_chunks,
    take_any_rows,
    take_rows,
    to_device,
)

__all__ = [
    "BLOCKS_PER_BUFFER",
    "BatchIterator",
    "StreamingBatches",
    "local_batch_size",
    "neighbor_pick",
    "shard_permutation",
    "training_batches",
    "validation_chunks",
]

# A streaming buffer (STREAM_BUFFER_BYTES) is gathered from this many blocks of consecutive
# rows at random places in the data.
BLOCKS_PER_BUFFER = 16


def shard_permutation(n, seed, epoch, rank=0, world_size=1):
    """This process's share of epoch ``epoch``'s permutation of ``range(n)``.

    The same indices, in the same order, as ``torch.utils.data.DistributedSampler(range(n),
    world_size, rank, shuffle=True, seed=seed)`` after ``set_epoch(epoch)``: the
    permutation is padded by repeating its start to a multiple of ``world_size`` and dealt
    round-robin. Computed as a tensor, without a Python list of ``n`` integers.
    """
    perm = torch.randperm(n, generator=_random.generator("epoch_order", seed, epoch))
    total = math.ceil(n / world_size) * world_size
    if total > n:
        perm = perm.repeat(math.ceil(total / n))[:total]
    return perm[rank::world_size]


def neighbor_pick(n_neighbors, n_rows, seed, rank, epoch, start):
    """Which of its ``n_neighbors`` neighbours each of a batch's ``n_rows`` rows is paired with.

    Drawn from a generator of the batch's own (the seed, the process, the epoch and the
    batch's ``start`` in it), so that a continued run draws what the uninterrupted one did.
    """
    generator = _random.generator("pick", seed, rank, epoch, start)
    return torch.randint(n_neighbors, (n_rows,), generator=generator)


def local_batch_size(batch_size, rank, world_size):
    """Rows per step for ``rank`` when ``batch_size`` rows per step are split over processes."""
    return batch_size // world_size + (rank < batch_size % world_size)


class BatchIterator:
    """Endless shuffled mini-batches of a tensor, as index gathers.

    Each epoch's permutation is moved to where the data lives once, so a batch is one
    index gather: no per-sample Python work. Data held on the training device (the usual
    case) costs no host-device traffic; data too large for a GPU stays on the host and each
    batch is gathered there and copied through pinned memory.

    Parameters
    ----------
    data : torch.Tensor of shape (n_samples, n_features)
        Training rows, on the training device.
    batch_size : int
        Rows per batch for this process (the last batch of an epoch may be smaller).
    seed : int
        Seeds every epoch's permutation (``seed + epoch``).
    rank, world_size : int, default=0, 1
        This process's shard of each epoch in a distributed run.
    neighbors : torch.Tensor of shape (n_samples, n_neighbors), default=None
        Row indices of each row's nearest neighbours (see :func:`cvae.neighbors.search.neighbor_graph`), where
        ``data`` lives. When given, each batch is a pair ``(rows, neighbours)``: with every
        row, ``neighbor_samples`` of its neighbours drawn at random (with replacement), as
        ``neighbor_samples`` blocks of ``len(rows)`` rows.
    device : torch.device, default=None
        Where batches are delivered; ``None`` means where ``data`` lives.
    neighbor_samples : int, default=1
        Neighbours drawn per row and batch when ``neighbors`` is given.
    weights : torch.Tensor of shape (n_samples,), default=None
        Sample weights, where ``data`` lives. When given, each batch is a triple ``(rows,
        neighbours or None, weights of the rows)``.
    """

    def __init__(self, data, batch_size, seed, rank=0, world_size=1, neighbors=None, device=None, neighbor_samples=1,
                 weights=None):
        self.data = data
        self.weights = weights
        self.neighbors = neighbors
        self.neighbor_samples = neighbor_samples
        self.device = data.device if device is None else device
        self.batch_size = max(1, min(batch_size, len(data)))
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch_length = math.ceil(len(data) / world_size)
        self._epoch = 0
        self._pos = 0
        self._perm = None

    def __iter__(self):
        return self

    def __next__(self):
        if self._pos >= self.epoch_length:
            self._epoch, self._pos, self._perm = self._epoch + 1, 0, None
        if self._perm is None:
            perm = shard_permutation(len(self.data), self.seed, self._epoch, self.rank, self.world_size)
            self._perm = perm.to(self.data.device)
        start = self._pos
        index = self._perm[start : start + self.batch_size]
        self._pos += self.batch_size
        rows = gather_rows(self.data, index, self.device)
        weights = None if self.weights is None else self.weights[index].to(self.device)
        neighbors = None
        if self.neighbors is not None:
            index = index.repeat(self.neighbor_samples)
            pick = neighbor_pick(self.neighbors.shape[1], len(index), self.seed, self.rank, self._epoch, start)
            neighbors = gather_rows(self.data, self.neighbors[index, pick.to(index.device)], self.device)
        return Batch(rows, neighbors, weights)

    def state_dict(self):
        return {"epoch": self._epoch, "pos": self._pos}

    def load_state_dict(self, state):
        self._epoch, self._pos = state["epoch"], state["pos"]
        self._perm = None


class StreamingBatches:
    """Endless shuffled mini-batches of chosen rows of a source, read a buffer at a time.

    The rows are cut into blocks of consecutive rows; each epoch deals the blocks in a
    seeded random order (sharded across processes like :func:`shard_permutation`),
    reads :data:`BLOCKS_PER_BUFFER` of them into a buffer, shuffles the buffer's rows and
    serves them in batches, so memory holds one buffer and reads stay sequential. When the
    rows fit in one buffer, they are shuffled exactly as :class:`BatchIterator` shuffles
    them, so a small file trains the same model as the same data in memory.

    Parameters
    ----------
    source : row source
        See :mod:`cvae.data.sources`.
    indices : ndarray of int
        Sorted rows of ``source`` to train on.
    batch_size : int
        Rows per batch for this process.
    seed : int
    device : torch.device
    rank, world_size : int, default=0, 1
    buffer_bytes : int, default=STREAM_BUFFER_BYTES
    weights : ndarray of shape (len(indices),), default=None
        Sample weights of the rows, delivered with their batches.
    neighbors : ndarray of shape (len(indices), n_neighbors), default=None
        Each row's nearest neighbours, as positions in ``indices``. With every batch come
        ``neighbor_samples`` of each row's neighbours drawn at random, as
        :class:`BatchIterator` draws them, read from ``source`` wherever they lie.
    neighbor_samples : int, default=1
    """

    def __init__(self, source, indices, batch_size, seed, device, rank=0, world_size=1,
                 buffer_bytes=STREAM_BUFFER_BYTES, weights=None, neighbors=None, neighbor_samples=1):
        self.source = source
        self.indices = np.asarray(indices)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float32)
        self.neighbors = neighbors
        self.neighbor_samples = neighbor_samples
        self.batch_size = max(1, min(batch_size, len(self.indices)))
        self.seed = seed
        self.device = device
        self.rank = rank
        self.world_size = world_size
        buffer_rows = max(self.batch_size, rows_within(buffer_bytes, source.n_features))
        block_rows = max(1, buffer_rows // BLOCKS_PER_BUFFER)
        # Each block: a range of positions in ``indices``.
        self.blocks = [np.arange(i, min(i + block_rows, len(self.indices))) for i in range(0, len(self.indices),
                                                                                           block_rows)]
        self._epoch = 0
        self._pos = 0
        self._start_epoch(0)

    def _start_epoch(self, epoch):
        if len(self.blocks) <= BLOCKS_PER_BUFFER:
            self._groups = [None]  # one buffer of all rows: shuffled exactly as BatchIterator does
        else:
            order = shard_permutation(len(self.blocks), self.seed, epoch, self.rank, self.world_size).numpy()
            self._groups = [order[i : i + BLOCKS_PER_BUFFER] for i in range(0, len(order), BLOCKS_PER_BUFFER)]
        self._epoch = epoch
        self._pos = 0
        self._next_group = 0
        self._pending = np.empty((0, self.source.n_features), np.float32)
        self._pending_positions = np.empty(0, np.int64)

    def _group_size(self, g):
        if self._groups[g] is None:
            return math.ceil(len(self.indices) / self.world_size)
        return sum(len(self.blocks[b]) for b in self._groups[g])

    def _read_group(self, g):
        """The rows of buffer ``g`` in their shuffled order, and their positions in ``indices``."""
        if self._groups[g] is None:
            positions = np.arange(len(self.indices))
            order = shard_permutation(len(positions), self.seed, self._epoch, self.rank, self.world_size).numpy()
        else:
            positions = np.concatenate([self.blocks[b] for b in self._groups[g]])
            order = _random.rng("block_order", self.seed, self._epoch, self.rank, g).permutation(len(positions))
        rows = np.concatenate([take_rows(self.source, self.indices[p]) for p in row_runs(positions)])
        return rows[order], positions[order]

    def __iter__(self):
        return self

    def __next__(self):
        while len(self._pending) < self.batch_size and self._next_group < len(self._groups):
            self._append(*self._read_group(self._next_group))
            self._next_group += 1
        if len(self._pending) == 0:
            self._start_epoch(self._epoch + 1)
            return next(self)
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        positions, self._pending_positions = np.split(self._pending_positions, [len(batch)])
        start = self._pos
        self._pos += len(batch)
        rows = to_device(torch.from_numpy(batch), self.device)
        weights = None if self.weights is None else to_device(torch.from_numpy(self.weights[positions]), self.device)
        neighbors = None
        if self.neighbors is not None:
            index = np.tile(positions, self.neighbor_samples)
            pick = neighbor_pick(self.neighbors.shape[1], len(index), self.seed, self.rank, self._epoch, start)
            chosen = self.neighbors[index, pick.numpy()]
            neighbors = to_device(torch.from_numpy(take_any_rows(self.source, self.indices[chosen])), self.device)
        return Batch(rows, neighbors, weights)

    def _append(self, rows, positions):
        self._pending = np.concatenate([self._pending, rows])
        self._pending_positions = np.concatenate([self._pending_positions, positions])

    def state_dict(self):
        return {"epoch": self._epoch, "pos": self._pos}

    def load_state_dict(self, state):
        """Continue at row ``pos`` of epoch ``epoch``, reading only the buffer that holds it."""
        epoch, pos = state["epoch"], state["pos"]
        self._start_epoch(epoch)
        sizes = [self._group_size(g) for g in range(len(self._groups))]
        skipped = 0
        while self._next_group < len(sizes) and skipped + sizes[self._next_group] <= pos:
            skipped += sizes[self._next_group]
            self._next_group += 1
        if skipped < pos:
            rows, positions = self._read_group(self._next_group)
            self._append(rows[pos - skipped :], positions[pos - skipped :])
            self._next_group += 1
        self._pos = pos


def training_batches(rows, batch_size, seed, device, distributed, graph=None, neighbor_samples=1, target_weight=0.0):
    """Endless batches of this process's share: gathered from rows in memory (on the device
    when they fit), streamed from disk otherwise.

    With ``graph`` (:func:`cvae.data.graph.training_graph`), each row's neighbours come with every batch;
    rows with class codes (``rows.labels``) have neighbours of their own class in the
    proportion ``target_weight`` (:func:`cvae.neighbors.labels.labelled_graph`).
    """
    rank, world_size = distributed.rank, distributed.world_size
    local = local_batch_size(batch_size, rank, world_size)
    neighbors = graph if graph is None else labels_folded(graph, rows.labels, target_weight, seed)
    if not rows.source.in_memory:
        return StreamingBatches(rows.source, rows.indices, local, seed, device, rank, world_size, STREAM_BUFFER_BYTES,
                                weights=rows.weights, neighbors=neighbors, neighbor_samples=neighbor_samples)
    data = _rows_tensor(rows, device, _in_memory_array(rows))
    if neighbors is not None:
        neighbors = torch.from_numpy(neighbors).to(data.device)
    return BatchIterator(data, local, seed, rank, world_size, neighbors, device=device,
                         neighbor_samples=neighbor_samples, weights=_weights_tensor(rows, data.device))


def validation_chunks(rows, chunk_size, device, distributed, normalize=None, with_neighbors=False, nearest=None):
    """This process's share of the validation rows, held in memory when in memory or small,
    re-read from disk otherwise.

    ``with_neighbors`` pairs each row with its nearest neighbour among all validation rows
    (found by the main process, or given as ``nearest``, a position per row), so that
    validation measures the objective being trained, the same on any number of processes.
    """
    shard = np.arange(distributed.rank, len(rows), distributed.world_size)
    weights = None if rows.weights is None else rows.weights[shard]
    source = rows.source
    in_memory = source.in_memory or len(rows) <= rows_within(STREAM_BUFFER_BYTES, source.n_features)
    array = _in_memory_array(rows) if in_memory else None
    # Chunks of all processes' rows, each shared among them, since the neighbour term's
    # negatives are its chunk's rows: every process then needs a row in every chunk.
    shared = distributed.enabled and len(rows) >= distributed.world_size
    neighbors = nearest
    if with_neighbors and nearest is None and len(rows) >= 2 and (shared or not distributed.enabled):
        neighbors = nearest_rows_among(rows, normalize, device, distributed, array)
    if distributed.enabled and not shared:
        neighbors = None  # fewer validation rows than processes: validate the ELBO alone
    bounds = shard_chunks(len(rows), max(chunk_size, distributed.world_size), distributed.rank,
                          distributed.world_size) if shared else None
    if not in_memory:
        return SourceChunks(source, rows.indices[shard], chunk_size, device, weights,
                            None if neighbors is None else rows.indices[neighbors[shard]], bounds)
    data = _rows_tensor(rows, device, array)
    positions = torch.from_numpy(shard).to(data.device) if distributed.enabled else None
    return TensorChunks(data, chunk_size, None if neighbors is None else torch.from_numpy(neighbors).to(data.device),
                        device=device, weights=None if weights is None else torch.from_numpy(weights).to(data.device),
                        positions=positions, bounds=bounds)


def _in_memory_array(rows):
    """The dense rows of a source held in memory (or small) as an array; ``None`` for a
    sparse source, whose rows stay sparse."""
    return None if getattr(rows.source, "sparse", False) else rows.read()


def _rows_tensor(rows, device, array):
    """Rows in memory (``array``, or :class:`SparseRows` of a sparse source) as a tensor on
    ``device`` if they fit there, else on the host."""
    if getattr(rows.source, "sparse", False):
        return SparseRows(rows.source, rows.indices)
    data = torch.from_numpy(array)
    return data.to(device) if fits_on_device(data.nbytes, device) else data


def _weights_tensor(rows, device):
    return None if rows.weights is None else torch.from_numpy(rows.weights).to(device)
