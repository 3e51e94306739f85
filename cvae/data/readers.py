"""Reading arrays and labels from files: ``.npy``, ``.npz`` (arrays or a sparse matrix),
``.csv`` and directories of ``.npy`` files. :mod:`cvae.files` offers them to users."""

import csv
import zipfile
from pathlib import Path

import numpy as np

from .sources import NpyDirectorySource, file_format, is_sparse_npz, load_sparse_npz, open_npz

__all__ = ["READABLE", "read_array", "read_labels", "read_npy_directory"]

READABLE = (".npy", ".npz", ".csv")


def read_array(path, *, key=None, label_column=None):
    """Read a 2-D array of samples from a file or a directory of .npy files.

    Parameters
    ----------
    path : str or path-like
        A ``.npy`` file, a ``.npz`` archive (of arrays, or a sparse matrix written by
        ``scipy.sparse.save_npz``, returned as CSR), a ``.csv`` file (comma-separated numbers, with
        an optional header line of column names) or a directory searched recursively for
        ``.npy`` files (see :func:`read_npy_directory`).
    key : str, default=None
        Array to read from a ``.npz`` archive; may be omitted when the archive holds one
        array, or one named ``X``.
    label_column : int or str, default=None
        Column holding labels rather than features: it is removed from the returned data
        and returned separately. A name needs a CSV header.

    Returns
    -------
    X : ndarray or scipy.sparse.csr_matrix of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,) or None
        The ``label_column``, when one was asked for.
    """
    path = Path(path).expanduser()
    kind = file_format(path)
    if kind == "directory":
        X, names = read_npy_directory(path), None
    elif not path.exists():
        raise FileNotFoundError(f"No such file or directory: {str(path)!r}")
    elif kind == "npy":
        X, names = np.load(path, allow_pickle=False), None
    elif kind == "npz" and key is None and is_sparse_npz(path):
        if label_column is not None:
            raise ValueError(f"{str(path)!r} holds a sparse matrix, which has no label column; give labels apart.")
        return load_sparse_npz(path), None
    elif kind == "npz":
        X, names = _read_npz(path, key), None
    elif kind == "csv":
        return _read_csv(path, label_column)
    else:
        raise ValueError(f"Cannot read {str(path)!r}: expected a directory or one of {', '.join(READABLE)} files.")
    if X.ndim != 2:
        raise ValueError(f"{str(path)!r} holds an array of shape {X.shape}; expected rows of samples (2-D).")
    if label_column is None:
        return X, None
    column = _column_index(label_column, names, X.shape[1], path)
    return np.delete(X, column, axis=1), X[:, column]


def read_labels(path, *, key=None):
    """Read one label per sample.

    ``.npy`` and ``.npz`` files hold a vector (or a single column); any other file is text
    with one label per line (a CSV column works), and a non-numeric first line above
    numeric labels is taken as a header and skipped.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {str(path)!r}")
    kind = file_format(path, directories=False)
    if kind in ("npy", "npz"):
        labels = np.load(path, allow_pickle=False) if kind == "npy" else _read_npz(path, key)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise ValueError(f"{str(path)!r} holds an array of shape {labels.shape}; labels need one per sample "
                             "(a vector or a single column).")
        return labels
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) > 1 and not _is_number(lines[0]) and all(_is_number(line) for line in lines[1:]):
        lines = lines[1:]
    if lines and all(_is_number(line) for line in lines):
        values = np.asarray(lines, dtype=np.float64)
        return values.astype(np.int64) if np.all(values == np.round(values)) else values
    return np.asarray(lines)


def read_npy_directory(path):
    """Stack every ``.npy`` file under ``path`` (recursively) into one array in memory.

    Each file holds one sample (a vector) or a block of samples (a 2-D array); files are
    read in sorted path order, so the row order, and therefore a seeded train/validation
    split, is the same on every run. :class:`cvae.data.sources.NpyDirectorySource` reads the
    same rows a range at a time.
    """
    source = NpyDirectorySource(Path(path).expanduser())
    return source.read(0, source.n_samples)


def _read_npz(path, key):
    try:
        with open_npz(path) as archive:
            return _array_of_archive(path, archive, key)
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"Cannot read {str(path)!r}: it is not a readable .npz archive ({exc}).") from exc
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"Cannot read {str(path)!r}: {exc}") from exc


def _array_of_archive(path, archive, key):
    names = list(archive.files)
    if key is None:
        if len(names) == 1:
            key = names[0]
        elif "X" in names:
            key = "X"
        else:
            raise ValueError(f"{str(path)!r} holds several arrays ({', '.join(names)}); choose one with a key.")
    if key not in names:
        raise ValueError(f"{str(path)!r} has no array {key!r}; it holds {', '.join(names)}.")
    return archive[key]


def _read_csv(path, label_column=None):
    """``(X, labels)`` of a CSV file; the label column may hold text, the others numbers."""
    with open(path, newline="") as f:
        rows = [row for row in csv.reader(f) if row]
    if not rows:
        raise ValueError(f"{str(path)!r} is empty.")
    names = None
    if not all(_is_number(field) for field in rows[0]):
        names, rows = [field.strip() for field in rows[0]], rows[1:]
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ValueError(f"{str(path)!r} has rows of different lengths: {sorted(widths)} fields.")
    table = np.array(rows, dtype=object).reshape(len(rows), -1)
    labels = None
    if label_column is not None:
        column = _column_index(label_column, names, table.shape[1], path)
        labels = _labels(table[:, column])
        table = np.delete(table, column, axis=1)
    try:
        X = table.astype(np.float64)
    except ValueError as exc:
        if label_column is not None:
            raise ValueError(f"{str(path)!r} has non-numeric values outside the label column ({exc}).") from exc
        raise ValueError(f"{str(path)!r} has non-numeric values ({exc}); a column of labels is named with "
                         "label_column (the command line's --label-column, or --labels NAME to fit on them).") from exc
    return X, labels


def _labels(column):
    """Numbers when every label is one, else the text as given."""
    text = np.array([str(v).strip() for v in column])
    return text.astype(np.float64) if all(_is_number(v) for v in text) else text


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


def _column_index(column, names, n_columns, path):
    if isinstance(column, str) and not column.lstrip("-").isdigit():
        if names is None or column not in names:
            raise ValueError(f"{str(path)!r} has no column named {column!r}" + (f"; it has {names}." if names else "."))
        return names.index(column)
    index = int(column)
    if not -n_columns <= index < n_columns:
        raise ValueError(f"label column {index} is out of range for {n_columns} columns in {str(path)!r}.")
    return index % n_columns
