"""Train/validation split, shuffled mini-batches and chunked passes over rows.

Batches come either from a tensor already on the device (:class:`BatchIterator`) or from a
row source on disk (:class:`StreamingBatches`, see :mod:`cvae.sources`). Both deal each
process of a distributed run its own shard of every epoch, the way
``torch.utils.data.DistributedSampler`` does, and both resume from ``(epoch, position)``.
"""

import math

import numpy as np
import torch

__all__ = [
    "BatchIterator",
    "SourceChunks",
    "StreamingBatches",
    "TensorChunks",
    "fits_on_device",
    "iterate_chunks",
    "local_batch_size",
    "neighbor_graph",
    "shard_permutation",
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


def neighbor_graph(X, n_neighbors):
    """Indices of each row's ``n_neighbors`` nearest other rows (Euclidean), as int64.

    Computed once per fit with scikit-learn's exact ``NearestNeighbors``; with fewer rows
    than ``n_neighbors + 1``, all other rows.
    """
    from sklearn.neighbors import NearestNeighbors

    n_neighbors = min(n_neighbors, len(X) - 1)
    graph = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(X).kneighbors(X, return_distance=False)
    # A row is its own nearest neighbour, except among duplicates: drop one copy of itself.
    own = graph == np.arange(len(X))[:, None]
    own[~own.any(axis=1), -1] = True
    return graph[~own].reshape(len(X), n_neighbors).astype(np.int64)


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


def gather_rows(data, index, device):
    """``data[index]`` on ``device``, gathered where ``data`` lives.

    Gathered on the host for a CUDA device, the rows go straight into pinned memory, from
    which the copy runs asynchronously (PyTorch's pinned-memory cache keeps the block
    until the copy is done).
    """
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
        Row indices of each row's nearest neighbours (see :func:`neighbor_graph`), where
        ``data`` lives. When given, each batch is a pair ``(rows, neighbours)``: with every
        row, ``neighbor_samples`` of its neighbours drawn at random (with replacement), as
        ``neighbor_samples`` blocks of ``len(rows)`` rows.
    device : torch.device, default=None
        Where batches are delivered; ``None`` means where ``data`` lives.
    neighbor_samples : int, default=1
        Neighbours drawn per row and batch when ``neighbors`` is given.
    """

    def __init__(self, data, batch_size, seed, rank=0, world_size=1, neighbors=None, device=None, neighbor_samples=1):
        self.data = data
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
        index = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        rows = gather_rows(self.data, index, self.device)
        if self.neighbors is None:
            return rows
        index = index.repeat(self.neighbor_samples)
        pick = torch.randint(self.neighbors.shape[1], (len(index),), device=index.device)
        return rows, gather_rows(self.data, self.neighbors[index, pick], self.device)

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
    """

    def __init__(self, source, indices, batch_size, seed, device, rank=0, world_size=1,
                 buffer_bytes=STREAM_BUFFER_BYTES):
        self.source = source
        self.indices = np.asarray(indices)
        self.batch_size = max(1, min(batch_size, len(self.indices)))
        self.seed = seed
        self.device = device
        self.rank = rank
        self.world_size = world_size
        buffer_rows = max(self.batch_size, buffer_bytes // (4 * source.n_features))
        block_rows = max(1, buffer_rows // BLOCKS_PER_BUFFER)
        self.blocks = [self.indices[i : i + block_rows] for i in range(0, len(self.indices), block_rows)]
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

    def _group_size(self, g):
        if self._groups[g] is None:
            return math.ceil(len(self.indices) / self.world_size)
        return sum(len(self.blocks[b]) for b in self._groups[g])

    def _read_group(self, g):
        if self._groups[g] is None:
            rows = take_rows(self.source, self.indices)
            return rows[shard_permutation(len(rows), self.seed, self._epoch, self.rank, self.world_size).numpy()]
        rows = np.concatenate([take_rows(self.source, self.blocks[b]) for b in self._groups[g]])
        rng = np.random.default_rng([self.seed, self._epoch, self.rank, g])
        return rows[rng.permutation(len(rows))]

    def __iter__(self):
        return self

    def __next__(self):
        while len(self._pending) < self.batch_size and self._next_group < len(self._groups):
            self._pending = np.concatenate([self._pending, self._read_group(self._next_group)])
            self._next_group += 1
        if len(self._pending) == 0:
            self._start_epoch(self._epoch + 1)
            return next(self)
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size :]
        self._pos += len(batch)
        return to_device(torch.from_numpy(batch), self.device)

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
            self._pending = self._read_group(self._next_group)[pos - skipped :]
            self._next_group += 1
        self._pos = pos


class TensorChunks:
    """Re-iterable chunks of a tensor (validation data held in memory), delivered on ``device``.

    With ``neighbors`` (one row index per row), chunks are ``(rows, neighbour rows)`` pairs.
    ``device=None`` means where ``data`` lives.
    """

    def __init__(self, data, chunk_size, neighbors=None, device=None):
        self.data = data
        self.chunk_size = chunk_size
        self.neighbors = neighbors
        self.device = data.device if device is None else device

    def __iter__(self):
        for rows in iterate_chunks(len(self.data), self.chunk_size):
            chunk = to_device(self.data[rows], self.device)
            if self.neighbors is None:
                yield chunk
            else:
                yield chunk, gather_rows(self.data, self.neighbors[rows], self.device)


class SourceChunks:
    """Re-iterable chunks of chosen rows of a source, read from disk on every pass."""

    def __init__(self, source, indices, chunk_size, device):
        self.source = source
        self.indices = np.asarray(indices)
        self.chunk_size = chunk_size
        self.device = device

    def __iter__(self):
        for rows in iterate_chunks(len(self.indices), self.chunk_size):
            yield to_device(torch.from_numpy(take_rows(self.source, self.indices[rows])), self.device)


def take_rows(source, indices, dtype=np.float32):
    """Rows ``indices`` (sorted) of ``source`` as a ``dtype`` array, read in few calls.

    Runs of indices less than ``_MAX_GAP`` apart are read as one range.
    """
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


def iterate_chunks(n_samples, chunk_size):
    """Yield ``slice`` objects that cover ``range(n_samples)`` in chunks."""
    for start in range(0, n_samples, chunk_size):
        yield slice(start, min(start + chunk_size, n_samples))
