"""Train/validation split, shuffled mini-batches and chunked passes over rows.

Batches come either from rows in memory (:class:`BatchIterator`: a tensor, usually on the
device, or :class:`SparseRows` of a sparse matrix, densified a batch at a time) or from a
row source on disk (:class:`StreamingBatches`, see :mod:`cvae.sources`). Both deal each
process of a distributed run its own shard of every epoch, the way
``torch.utils.data.DistributedSampler`` does, and both resume from ``(epoch, position)``.
"""

import math
from typing import NamedTuple, Optional

import numpy as np
import torch

from ._random import PICK_STREAM, seeded_generator

__all__ = [
    "Batch",
    "BatchIterator",
    "SourceChunks",
    "SparseRows",
    "Split",
    "StreamingBatches",
    "TensorChunks",
    "fits_on_device",
    "iterate_chunks",
    "local_batch_size",
    "neighbor_pick",
    "shard_chunks",
    "shard_permutation",
    "take_any_rows",
    "take_rows",
    "train_validation_split",
]

# A streaming buffer holds about this many bytes of float32 rows, gathered from this many
# blocks of consecutive rows at random places in the data.
STREAM_BUFFER_BYTES = 64 * 2**20
BLOCKS_PER_BUFFER = 16
# Rows this close together are read in one call and the rows between them dropped: a read
# of 64 extra rows costs about what a separate read call does.
_MAX_GAP = 64


def train_validation_split(n_samples, validation_fraction, seed):
    """Shuffled row indices ``(train, validation)`` with ``validation_fraction`` held out.

    At least one row is held out, so a handful of samples can still be fitted.

    Raises
    ------
    ValueError
        If either part would be empty (fewer than 2 samples).
    """
    n_valid = max(1, int(round(n_samples * validation_fraction)))
    if n_valid < 1 or n_valid >= n_samples:
        raise ValueError(
            f"Cannot hold out validation_fraction={validation_fraction} of {n_samples} samples: "
            f"that leaves {n_valid} validation and {n_samples - n_valid} training samples, and both "
            "need at least one. Provide more samples, change validation_fraction, or pass X_valid."
        )
    perm = np.random.default_rng(seed).permutation(n_samples)
    return perm[n_valid:], perm[:n_valid]


def shard_permutation(n, seed, epoch, rank=0, world_size=1):
    """This process's share of epoch ``epoch``'s permutation of ``range(n)``.

    The same indices, in the same order, as ``torch.utils.data.DistributedSampler(range(n),
    world_size, rank, shuffle=True, seed=seed)`` after ``set_epoch(epoch)``: the
    permutation is padded by repeating its start to a multiple of ``world_size`` and dealt
    round-robin. Computed as a tensor, without a Python list of ``n`` integers.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    total = math.ceil(n / world_size) * world_size
    if total > n:
        perm = perm.repeat(math.ceil(total / n))[:total]
    return perm[rank::world_size]


def neighbor_pick(n_neighbors, n_rows, seed, rank, epoch, start):
    """Which of its ``n_neighbors`` neighbours each of a batch's ``n_rows`` rows is paired with.

    Drawn from a generator of the batch's own (the seed, the process, the epoch and the
    batch's ``start`` in it), so that a continued run draws what the uninterrupted one did.
    """
    generator = seeded_generator(seed, PICK_STREAM, rank, epoch, start)
    return torch.randint(n_neighbors, (n_rows,), generator=generator)


def local_batch_size(batch_size, rank, world_size):
    """Rows per step for ``rank`` when ``batch_size`` rows per step are split over processes."""
    return batch_size // world_size + (rank < batch_size % world_size)


# Training and validation rows move to a GPU when they take at most this share of its free
# memory; the rest is left to activations and the optimizer.
DEVICE_MEMORY_SHARE = 0.5


def fits_on_device(n_bytes, device, share=DEVICE_MEMORY_SHARE):
    """Whether ``n_bytes`` of data should be held on ``device``.

    Always on the CPU (and on Apple MPS, whose memory is the host's); on a CUDA GPU when
    they take at most ``share`` of its free memory.
    """
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return n_bytes <= share * free


def to_device(rows, device):
    """``rows`` (a host tensor) on ``device``; copied to a CUDA GPU through pinned memory."""
    if device.type == "cuda" and rows.device.type == "cpu":
        return rows.pin_memory().to(device, non_blocking=True)
    return rows.to(device)


class SparseRows:
    """Chosen rows of a CSR matrix, indexed like a tensor of those rows but densified only
    where a batch is taken (:func:`gather_rows`), never as a whole.

    Parameters
    ----------
    matrix : scipy.sparse CSR matrix or array
    indices : ndarray of int
        The rows of ``matrix`` these rows are (not copied out of it).
    """

    device = torch.device("cpu")

    def __init__(self, matrix, indices):
        self.matrix = matrix
        self.indices = np.asarray(indices)
        self.shape = (len(self.indices), matrix.shape[1])
        # What the dense rows would take: held on the host, the matrix is never moved whole.
        self.nbytes = 4 * self.shape[0] * self.shape[1]

    def __len__(self):
        return len(self.indices)

    def block(self, index):
        """Rows ``index`` (a slice, an integer array or tensor) as a CSR matrix."""
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return self.matrix[self.indices[index]]

    def __getitem__(self, index):
        return densify(self.block(index), self.device)

    def gather(self, index, device):
        return densify(self.block(index), device)


def densify(block, device):
    """A CSR matrix as a dense float32 tensor on ``device``: built on a GPU from the
    matrix's arrays, so only the stored values cross the bus."""
    if device.type != "cuda":
        return torch.from_numpy(block.toarray().astype(np.float32, copy=False))
    return densify_on(block, device)


def densify_on(block, device):
    """A CSR matrix sent to ``device`` as its three arrays and made dense there."""
    tensor = torch.sparse_csr_tensor(
        torch.from_numpy(block.indptr.astype(np.int64)),
        torch.from_numpy(block.indices.astype(np.int64)),
        torch.from_numpy(block.data.astype(np.float32)),
        block.shape,
    )
    return tensor.to(device).to_dense()


def gather_rows(data, index, device):
    """``data[index]`` on ``device``, gathered where ``data`` lives.

    Gathered on the host for a CUDA device, the rows go straight into pinned memory, from
    which the copy runs asynchronously (PyTorch's pinned-memory cache keeps the block
    until the copy is done). :class:`SparseRows` are densified on ``device``.
    """
    if isinstance(data, SparseRows):
        return data.gather(index, device)
    if device.type == "cuda" and data.device.type == "cpu":
        out = torch.empty((len(index), *data.shape[1:]), dtype=data.dtype, pin_memory=True)
        return torch.index_select(data, 0, index, out=out).to(device, non_blocking=True)
    return data[index].to(device)


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
        Row indices of each row's nearest neighbours (see :func:`cvae.neighbor_search.neighbor_graph`), where
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
        See :mod:`cvae.sources`.
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
        buffer_rows = max(self.batch_size, buffer_bytes // (4 * source.n_features))
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
            order = np.random.default_rng([self.seed, self._epoch, self.rank, g]).permutation(len(positions))
        rows = np.concatenate([take_rows(self.source, self.indices[p]) for p in _runs(positions)])
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


class TensorChunks:
    """Re-iterable chunks of a tensor or :class:`SparseRows` (validation data held in
    memory), delivered on ``device`` as :class:`Batch` es.

    ``positions`` (a tensor of row indices, where ``data`` lives) picks the rows delivered,
    all by default; ``bounds`` (slices of them, see :func:`shard_chunks`) cuts them into
    chunks, by default of ``chunk_size`` rows. With ``neighbors`` (a row index of ``data``
    per row of ``data``), chunks come with their neighbour rows; with ``weights`` (a tensor,
    one per delivered row), with their weights. ``device=None`` means where ``data`` lives.
    """

    def __init__(self, data, chunk_size, neighbors=None, device=None, weights=None, positions=None, bounds=None):
        self.data = data
        self.chunk_size = chunk_size
        self.neighbors = neighbors
        self.weights = weights
        self.positions = positions
        self.bounds = bounds
        self.device = data.device if device is None else device

    def __iter__(self):
        n_rows = len(self.data) if self.positions is None else len(self.positions)
        for rows in self.bounds or iterate_chunks(n_rows, self.chunk_size):
            index = rows if self.positions is None else self.positions[rows]
            chunk = gather_rows(self.data, index, self.device) if isinstance(self.data, SparseRows) else \
                to_device(self.data[index], self.device)
            neighbors = None if self.neighbors is None else gather_rows(self.data, self.neighbors[index], self.device)
            weights = None if self.weights is None else to_device(self.weights[rows], self.device)
            yield Batch(chunk, neighbors, weights)


class SourceChunks:
    """Re-iterable chunks of chosen rows of a source, read from disk on every pass, with
    their ``weights`` (an array, one per row) and their ``neighbors`` (a row of ``source``
    per row, read with it) when given; ``bounds`` as for :class:`TensorChunks`."""

    def __init__(self, source, indices, chunk_size, device, weights=None, neighbors=None, bounds=None):
        self.source = source
        self.indices = np.asarray(indices)
        self.chunk_size = chunk_size
        self.device = device
        self.weights = weights
        self.neighbors = neighbors
        self.bounds = bounds

    def __iter__(self):
        for rows in self.bounds or iterate_chunks(len(self.indices), self.chunk_size):
            chunk = to_device(torch.from_numpy(take_rows(self.source, self.indices[rows])), self.device)
            weights = None if self.weights is None else to_device(torch.from_numpy(self.weights[rows]), self.device)
            neighbors = None
            if self.neighbors is not None:
                neighbors = take_any_rows(self.source, self.neighbors[rows])
                neighbors = to_device(torch.from_numpy(neighbors), self.device)
            yield Batch(chunk, neighbors, weights)


class Split(NamedTuple):
    """The rows of ``X`` held out for validation (sorted row numbers), and how many rows
    they were drawn from: what a continued run needs to validate on the same rows."""

    validation_rows: np.ndarray
    n_samples: int


class Batch(NamedTuple):
    """What the trainer takes as a batch: the rows, their neighbours' rows (one block of
    ``len(rows)`` per neighbour drawn) when the neighbour term is on, and the rows'
    weights when they have some."""

    rows: torch.Tensor
    neighbors: Optional[torch.Tensor] = None
    weights: Optional[torch.Tensor] = None


def _runs(positions):
    """``positions`` cut into sorted runs (blocks are ranges; a buffer's blocks come in any order)."""
    breaks = np.flatnonzero(np.diff(positions) < 0) + 1
    return np.split(positions, breaks)


def take_rows(source, indices, dtype=np.float32):
    """Rows ``indices`` (sorted) of ``source`` as a ``dtype`` array, read in few calls.

    Runs of indices less than ``_MAX_GAP`` apart are read as one range; a sparse source
    densifies just these rows.
    """
    if hasattr(source, "take"):
        return source.take(indices, dtype)
    out = np.empty((len(indices), source.n_features), dtype=dtype)
    if len(indices) == 0:
        return out
    breaks = np.flatnonzero(np.diff(indices) > _MAX_GAP) + 1
    for run in np.split(np.arange(len(indices)), breaks):
        first, last = indices[run[0]], indices[run[-1]]
        block = source.read(first, last + 1)
        if len(block) == len(run):  # consecutive rows: no gather, no extra copy
            out[run[0] : run[-1] + 1] = block
        else:
            out[run] = block[indices[run] - first]
    return out


def take_any_rows(source, indices, dtype=np.float32):
    """Rows ``indices`` (in any order, repeats allowed) of ``source``, each distinct row read once."""
    distinct, inverse = np.unique(indices, return_inverse=True)
    return take_rows(source, distinct, dtype)[inverse.reshape(-1)]


def shard_chunks(n_samples, chunk_size, rank, world_size):
    """Slices of this process's rows ``range(rank, n_samples, world_size)``, one per chunk of
    ``chunk_size`` rows of all processes: every process has as many chunks, and each
    chunk's rows over all processes are the chunk one process would take. A last chunk of
    fewer rows than processes joins the one before, so that no process has an empty chunk."""
    starts = list(range(0, n_samples, chunk_size))
    if len(starts) > 1 and n_samples - starts[-1] < world_size:
        starts.pop()
    below = [max(0, -(-(start - rank) // world_size)) for start in [*starts, n_samples]]
    return [slice(a, b) for a, b in zip(below[:-1], below[1:])]


def iterate_chunks(n_samples, chunk_size):
    """Yield ``slice`` objects that cover ``range(n_samples)`` in chunks."""
    for start in range(0, n_samples, chunk_size):
        yield slice(start, min(start + chunk_size, n_samples))
