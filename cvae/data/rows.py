"""Rows as training sees them: the train/validation split, rows gathered onto a device,
chunked passes over rows (validation, inference), and the shapes a batch and a split take.

Rows live in memory (a tensor, or :class:`SparseRows` of a sparse matrix, densified a
batch at a time) or in a row source on disk (see :mod:`cvae.data.sources`). Shuffled training
batches are :mod:`cvae.data.batches`.
"""

from typing import NamedTuple, Optional

import numpy as np
import torch

from .. import _random

__all__ = [
    "STREAM_BUFFER_BYTES",
    "Batch",
    "SourceChunks",
    "SparseRows",
    "Split",
    "TensorChunks",
    "fits_on_device",
    "iterate_chunks",
    "row_runs",
    "rows_within",
    "shard_chunks",
    "take_any_rows",
    "take_rows",
    "train_validation_split",
]

# Rows are read from a source about this many bytes of float32 rows at a time.
STREAM_BUFFER_BYTES = 64 * 2**20
# Rows this close together are read in one call and the rows between them dropped: a read
# of 64 extra rows costs about what a separate read call does.
_MAX_GAP = 64


def rows_within(n_bytes, n_features, itemsize=4):
    """How many rows of ``n_features`` values of ``itemsize`` bytes fit in ``n_bytes``, at
    least 1: the one rule by which buffers, chunks and stored samples are sized."""
    return max(1, int(n_bytes) // (itemsize * max(int(n_features), 1)))


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
    perm = _random.rng("split", seed).permutation(n_samples)
    return perm[n_valid:], perm[:n_valid]


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
    """Chosen rows of a sparse source, indexed like a tensor of those rows but densified only
    where a batch is taken (:func:`gather_rows`), never as a whole. The source is the one
    holder of the CSR matrix; this only picks rows of it.

    Parameters
    ----------
    source : cvae.data.sources.SparseSource
    indices : ndarray of int
        The rows of ``source`` these rows are.
    """

    device = torch.device("cpu")

    def __init__(self, source, indices):
        self.source = source
        self.indices = np.asarray(indices)
        self.shape = (len(self.indices), source.n_features)
        # What the dense rows would take: held on the host, the matrix is never moved whole.
        self.nbytes = 4 * self.shape[0] * self.shape[1]

    def __len__(self):
        return len(self.indices)

    def block(self, index):
        """Rows ``index`` (a slice, an integer array or tensor) as a CSR matrix."""
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        return self.source.block(self.indices[index])

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


def row_runs(positions):
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
