"""Row sources: the samples of an array, a sparse matrix, a .npy file, a directory of .npy
files, a sparse ``.npz`` file or an ``.h5ad`` file.

A source reads any range of rows on demand, so data larger than memory can be scanned
and batched a block at a time. Files are read with ordinary ``readinto`` calls rather
than memory maps: pages of a memory map count towards the process's resident memory for
as long as the map lives, so scanning a 2 GB memmap would hold 2 GB resident, while read
pages stay in the operating system's cache, which it can drop at will.
"""

import contextlib
import mmap
import zipfile
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "ArraySource", "NpyDirectorySource", "RawFileSource", "RowSource", "SparseSource", "file_format", "is_sparse_npz",
    "load_sparse_npz", "memmap_source", "npy_file_source", "open_npz",
]

# The data formats a path's suffix names, in any case: the one place a suffix is read.
FORMATS = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".h5ad": "h5ad"}


def file_format(path, *, directories=True):
    """What ``path`` holds by its name: ``"directory"`` (with ``directories``, for an
    existing directory), ``"npy"``, ``"npz"``, ``"csv"``, ``"h5ad"``, or ``None`` for
    another suffix."""
    path = Path(path).expanduser()
    if directories and path.is_dir():
        return "directory"
    return FORMATS.get(path.suffix.lower())


@runtime_checkable
class RowSource(Protocol):
    """What every row source offers (the sources here, and ``cvae.data.adata.H5adSource``).

    ``n_samples`` and ``n_features`` are the data's shape and ``dtype`` its stored type;
    ``name`` is how error messages refer to it; ``in_memory`` says that reading a row costs
    no file read; ``checked`` that every value was validated as a whole (finite), so
    chunks need not be checked again. A source that is ``sparse`` (an attribute, default
    false) also gives ``block(indices)``, rows as a CSR matrix, and ``take(indices,
    dtype)``; the others are read with :func:`cvae.data.rows.take_rows`.
    """

    n_samples: int
    n_features: int
    dtype: np.dtype
    name: str
    in_memory: bool
    checked: bool

    def read(self, start, stop):
        """Rows ``start:stop`` as a dense array."""


_NUMERIC_KINDS = "biuf"


class ArraySource:
    """Rows of an array that is already in memory (or a memory map of unknown layout).

    Parameters
    ----------
    array : ndarray of shape (n_samples, n_features)
    name : str, default="X"
        How error messages refer to the data.
    in_memory : bool, default=True
        False for a view of a memory map, which should be read a block at a time.
    checked : bool, default=False
        True when the array was validated as a whole (finite values), so that its chunks
        need not be checked again.
    """

    def __init__(self, array, name="X", in_memory=True, checked=False):
        self.array = array
        self.name = name
        self.in_memory = in_memory
        self.checked = checked
        self.n_samples, self.n_features = array.shape
        self.dtype = array.dtype

    def read(self, start, stop):
        """Rows ``start:stop`` as an array (a view where possible)."""
        return self.array[start:stop]


class SparseSource:
    """Rows of a ``scipy.sparse`` CSR matrix, densified only a block of rows at a time.

    Parameters
    ----------
    matrix : scipy.sparse CSR matrix or array of shape (n_samples, n_features)
        Kept as it is (not copied) when in canonical form; duplicate or unsorted entries are
        summed and sorted in a copy, so that every pass sees the values ``toarray`` gives.
    name : str, default="X"
    checked : bool, default=False
        True when the stored values were validated as a whole (finite).
    """

    sparse = True
    in_memory = True

    def __init__(self, matrix, name="X", checked=False):
        if not matrix.has_canonical_format:
            matrix = matrix.copy()
            matrix.sum_duplicates()
        self.matrix = matrix
        self.name = name
        self.checked = checked
        self.n_samples, self.n_features = matrix.shape
        self.dtype = matrix.dtype

    def read(self, start, stop):
        """Rows ``start:stop`` as a dense array."""
        return self.matrix[start:stop].toarray()

    def take(self, indices, dtype=np.float32):
        """Rows ``indices`` as a dense ``dtype`` array."""
        return self.matrix[indices].toarray().astype(dtype, copy=False)

    def block(self, indices):
        """Rows ``indices`` as a CSR matrix (no dense copy)."""
        return self.matrix[indices]


class RawFileSource:
    """Rows of a C-ordered 2-D array stored at ``offset`` bytes into a file.

    Parameters
    ----------
    path : path-like
    offset : int
        Byte position of the first element.
    dtype : numpy.dtype
    shape : tuple of (n_samples, n_features)
    name : str, default=None
        How error messages refer to the data; defaults to the path.
    """

    def __init__(self, path, offset, dtype, shape, name=None):
        self.path = Path(path)
        self.offset = int(offset)
        self.dtype = np.dtype(dtype)
        self.n_samples, self.n_features = shape
        self.name = name or repr(str(path))
        self.in_memory = False
        self.checked = False

    def read(self, start, stop):
        out = np.empty((max(stop - start, 0), self.n_features), dtype=self.dtype)
        row_bytes = self.n_features * self.dtype.itemsize
        with open(self.path, "rb") as f:
            f.seek(self.offset + start * row_bytes)
            n_read = f.readinto(out.reshape(-1).view(np.uint8))
        if n_read != out.nbytes:
            raise ValueError(f"{self.name} is shorter than its header says: it was truncated or is being written.")
        return out


class NpyDirectorySource:
    """Rows of every ``.npy`` file under a directory, in sorted path order.

    Each file holds one sample (a vector) or a block of samples (a 2-D array), as in the
    original CompressionVAE. Only the files' headers are read on construction.

    Parameters
    ----------
    path : path-like
    """

    def __init__(self, path):
        path = Path(path)
        try:
            files = sorted(p for p in path.rglob("*") if file_format(p, directories=False) == "npy" and not p.is_dir())
        except OSError as exc:  # e.g. a symbolic link loop
            raise ValueError(f"Cannot list the .npy files under {str(path)!r}: {exc}") from exc
        broken = [p for p in files if not p.is_file()]
        if broken:
            raise ValueError(f"{str(broken[0])!r} under {str(path)!r} is not a readable file (a dangling link?).")
        if not files:
            raise ValueError(f"No .npy files found under {str(path)!r}.")
        self.files = [npy_file_source(file) for file in files]
        widths = sorted({f.n_features for f in self.files})
        if len(widths) > 1:
            raise ValueError(f"The .npy files under {str(path)!r} have different numbers of features: {widths}.")
        self.name = f"the .npy files under {str(path)!r}"
        self.in_memory = False
        self.checked = False
        self.n_features = widths[0]
        self.dtype = np.result_type(*(f.dtype for f in self.files))
        self.starts = np.cumsum([0] + [f.n_samples for f in self.files])
        self.n_samples = int(self.starts[-1])

    def read(self, start, stop):
        out = np.empty((max(stop - start, 0), self.n_features), dtype=self.dtype)
        first = np.searchsorted(self.starts, start, side="right") - 1
        pos = start
        for index in range(first, len(self.files)):
            if pos >= stop:
                break
            file_start = self.starts[index]
            piece_stop = min(stop, self.starts[index + 1])
            out[pos - start : piece_stop - start] = self.files[index].read(pos - file_start, piece_stop - file_start)
            pos = piece_stop
        return out


def npy_file_source(path, vector_is_sample=True):
    """A :class:`RawFileSource` for a ``.npy`` file, from its header alone.

    A vector is one sample (as in a directory of per-sample files), or an error where
    ``vector_is_sample`` is False (a file given as the data itself). Fortran-ordered arrays, which cannot be read a
    row at a time,
    are loaded into memory; arrays of Python objects are refused without being unpickled.
    """
    path = Path(path)
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = header(f)
        except ValueError as exc:
            raise ValueError(f"{str(path)!r} is not a valid .npy file ({exc}).") from exc
        offset = f.tell()
    _check_numeric(dtype, repr(str(path)))
    if len(shape) not in (1, 2) or (len(shape) == 1 and not vector_is_sample):
        expected = "a vector or rows (2-D)" if vector_is_sample else "rows of samples (2-D: n_samples x n_features)"
        raise ValueError(f"{str(path)!r} holds an array of shape {shape}; expected {expected}.")
    shape = (1, shape[0]) if len(shape) == 1 else shape
    if fortran_order and shape[0] > 1:
        return ArraySource(np.ascontiguousarray(np.load(path, allow_pickle=False)), name=repr(str(path)))
    return RawFileSource(path, offset, dtype, shape)


def load_sparse_npz(path):
    """The CSR matrix in a file written by ``scipy.sparse.save_npz``, its values checked.

    Raises
    ------
    ValueError
        Naming the file when it is damaged, holds dense arrays instead, or holds
        non-numeric or non-finite values.
    """
    import scipy.sparse as sp

    path = Path(path)
    try:
        with open_npz(path) as archive:
            names = set(archive.files)
        if not {"format", "shape", "data"} <= names:
            raise _NotSparse(
                f"{str(path)!r} holds no sparse matrix (its arrays: {', '.join(sorted(names)) or 'none'}). Pass "
                "a file written by scipy.sparse.save_npz, or read dense arrays with cvae.files.read_array."
            )
        with open(path, "rb") as file:
            matrix = sp.load_npz(file)
    except _NotSparse as exc:
        raise ValueError(str(exc)) from None
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{str(path)!r} is not a readable sparse .npz file ({exc}).") from exc
    if matrix.ndim != 2:
        raise ValueError(f"{str(path)!r} holds a sparse array of shape {matrix.shape}; expected 2-D.")
    _check_numeric(matrix.dtype, repr(str(path)))
    matrix = matrix.tocsr()
    if matrix.dtype.kind != "f" or matrix.dtype.itemsize < 4:
        matrix = matrix.astype(np.float32)
    if not np.isfinite(matrix.data).all():
        what = "NaN" if np.isnan(matrix.data).any() else "infinity"
        raise ValueError(f"{str(path)!r} contains {what}.")
    return matrix


class _NotSparse(Exception):
    pass


@contextlib.contextmanager
def open_npz(path):
    """``np.load`` of the ``.npz`` archive at ``path``, without pickles, whose file is closed
    even when the archive is damaged (``np.load`` leaves it open then)."""
    with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
        yield archive


def is_sparse_npz(path):
    """Whether ``path`` is a ``.npz`` archive as ``scipy.sparse.save_npz`` writes them; a
    damaged archive is left to whoever reads it to report."""
    try:
        with open_npz(path) as archive:
            return {"format", "shape", "data"} <= set(archive.files)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return False


def memmap_source(X, name):
    """A row source for a ``numpy.memmap``: its file, read a block at a time, where the map
    is read-only and C-ordered, else the map itself."""
    _check_numeric(X.dtype, name)
    if X.ndim != 2:
        raise ValueError(f"{name} is a memmap of shape {X.shape}; expected 2-D (n_samples, n_features).")
    # A read-only memmap made by np.memmap or np.load owns its map; its data then starts at
    # ``offset`` bytes into ``filename``, and we read the file instead of touching the map.
    # Writable maps ("r+", "w+", copy-on-write "c") may hold in memory what the file does
    # not, and views of a memmap may not be the file's layout: both are read through the map.
    if X.mode == "r" and isinstance(X.base, mmap.mmap) and X.filename is not None and X.flags.c_contiguous:
        return RawFileSource(X.filename, X.offset, X.dtype, X.shape, name=name)
    return ArraySource(X, name=name, in_memory=False)


def _check_numeric(dtype, name):
    if dtype.kind not in _NUMERIC_KINDS:
        what = "strings" if dtype.kind in "US" else "Python objects" if dtype.kind == "O" else f"dtype {dtype}"
        raise ValueError(f"{name} holds {what}; CompressionVAE needs numbers.")
