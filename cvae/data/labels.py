"""Class labels for ``fit(X, y)``: read (from files and AnnData columns) and checked, one
code per row, ``UNLABELLED`` for a row without a label. How the labels shape the neighbour
graph is :mod:`cvae.neighbors.labels`.
"""

import os
import sys

import numpy as np

from ..neighbors.labels import UNLABELLED
from .adata import obs_labels, read_h5ad
from .readers import read_labels
from .sources import file_format

__all__ = ["UNLABELLED", "check_labels", "check_saved_classes", "fit_labels"]


def fit_labels(X, y):
    """``y`` as given to ``fit``, as an array: as given, the labels in the file it names
    (:func:`cvae.files.read_labels`), or, for an AnnData ``X`` or an ``.h5ad`` path (streamed),
    the column of its ``obs`` it names, as scANVI's ``labels_key`` (missing values mark
    unlabelled rows)."""
    if not isinstance(y, (str, os.PathLike)):
        return y
    anndata = sys.modules.get("anndata")  # an AnnData exists only where anndata was imported
    if isinstance(y, str) and anndata is not None and isinstance(X, anndata.AnnData):
        return obs_labels(X, y)
    streamed = isinstance(X, (str, os.PathLike)) and file_format(X, directories=False) == "h5ad"
    if isinstance(y, str) and streamed and not os.path.exists(os.path.expanduser(y)):
        return obs_labels(read_h5ad(X, backed="r"), y)  # an obs column of the streamed file
    return read_labels(y)


def check_labels(y, n_samples, classes=None):
    """``(classes, codes)``: the sorted classes of ``y`` and each row's index among them,
    ``-1`` for an unlabelled row.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Integer class labels with ``-1`` for unlabelled rows, or string or object labels
        with ``None`` for unlabelled rows. Floats that are whole numbers count as integers.
        Whatever the type, ``None``, NaN (pandas' ``NA`` too), -1, and the texts ``""``,
        ``"-1"`` and ``"nan"`` mark an unlabelled row.
    n_samples : int
        Rows of ``X``.
    classes : ndarray, default=None
        The classes of the run being continued: ``y`` may hold no others.

    Raises
    ------
    ValueError
        For a ``y`` of another length or shape, continuous values, no labelled row, or
        classes that the continued run did not have.
    """
    values = np.asarray(y)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"y must be one label per row of X, a 1-D array; got shape {values.shape}.")
    if len(values) != n_samples:
        raise ValueError(f"y has {len(values)} labels, but X has {n_samples} rows.")
    if values.dtype.kind == "b":
        values = values.astype(np.int64)
    values = _with_missing_marked(values)
    if values.dtype.kind == "f":
        finite = np.isfinite(values)
        if not finite.all() or np.any(np.mod(values, 1) != 0):
            raise ValueError(
                "y holds values that are not whole numbers: CompressionVAE takes class labels (integers, with -1 "
                "for unlabelled rows, or strings), not continuous targets."
            )
        values = values.astype(np.int64)
    if values.dtype.kind in "iu":
        labelled = values != UNLABELLED
    elif values.dtype.kind in "UO":
        labelled = np.array([v is not None for v in values], dtype=bool)
        if values.dtype.kind == "O":
            kinds = {type(v) for v in values[labelled]}
            if any(not issubclass(k, (str, np.str_)) for k in kinds) and len(kinds) > 1:
                raise ValueError(f"y mixes label types ({', '.join(sorted(k.__name__ for k in kinds))}); use one.")
    else:
        raise ValueError(f"y holds {values.dtype} values; class labels must be integers or strings.")
    if not labelled.any():
        raise ValueError("y marks every row unlabelled (-1 or None): there are no labels to fit; pass y=None.")
    found = np.unique(values[labelled])
    if classes is None:
        classes = found
    else:
        unknown = np.setdiff1d(found, classes)
        if len(unknown):
            raise ValueError(
                f"y holds classes the run being continued did not have: {', '.join(map(repr, unknown[:5].tolist()))}"
                f"; its classes are {', '.join(map(repr, classes[:10].tolist()))}."
            )
    codes = np.full(n_samples, UNLABELLED, dtype=np.int64)
    codes[labelled] = np.searchsorted(classes, values[labelled])
    return classes, codes


def _is_missing(value):
    """Whether a label marks an unlabelled row: ``None``, NaN (float, pandas' ``NA``, a
    categorical's missing value), the integer -1, or the text ``""``, ``"-1"`` or ``"nan"``
    (as a text file writes them)."""
    if value is None or type(value).__name__ == "NAType":
        return True
    if isinstance(value, (str, np.str_)):
        return value.strip().lower() in ("", "-1", "nan")
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value)) or value == UNLABELLED
    return isinstance(value, (int, np.integer)) and value == UNLABELLED


def _with_missing_marked(values):
    """``values`` with every missing label (:func:`_is_missing`) as -1 among integer labels
    (floats: NaN -> -1) or ``None`` among string labels; object labels that are all whole
    numbers become integers."""
    if values.dtype.kind == "f":
        return np.where(np.isnan(values), UNLABELLED, values)
    if values.dtype.kind not in "UO":
        return values
    missing = np.array([_is_missing(v) for v in values], dtype=bool)
    present = values[~missing]
    numbers = all(isinstance(v, (int, np.integer, float, np.floating)) and not isinstance(v, (bool, np.bool_))
                  and float(v).is_integer() for v in present)
    if numbers and len(present):
        out = np.full(len(values), UNLABELLED, dtype=np.int64)
        out[~missing] = present.astype(np.int64)
        return out
    out = values.astype(object)
    out[missing] = None
    return out


def check_saved_classes(classes, where="the checkpoint"):
    """The classes a checkpoint holds (a list of distinct strings or of distinct integers,
    sorted) as an array; ``ValueError`` naming ``where`` (the file) when they are damaged."""
    kinds = (str,) if classes and isinstance(classes[0], str) else (int,)
    valid = (isinstance(classes, list) and len(classes) > 0
             and all(isinstance(c, kinds) and not isinstance(c, bool) for c in classes)
             and classes == sorted(set(classes)))
    if not valid:
        raise ValueError(f"Cannot read {where}: its classes are damaged ({str(classes)[:80]}).")
    return np.asarray(classes)
