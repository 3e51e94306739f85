"""One way in for data: every public entry point turns its input into a row source here.

Paths to a ``.npy`` or ``.h5ad`` file or a directory of ``.npy`` files, memmaps and backed
AnnData are streamed from their files; a sparse ``.npz`` file is read into memory; arrays,
sparse matrices and AnnData in memory are validated as scikit-learn validates input. The
width of every source, whatever its kind, is checked here, in one wording per role.
"""

import os
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .._validation import check_input_array, check_latent, validate_input
from .adata import anndata_rows, h5ad_source
from .sources import (
    ArraySource,
    NpyDirectorySource,
    SparseSource,
    file_format,
    load_sparse_npz,
    memmap_source,
    npy_file_source,
)

__all__ = [
    "STREAMED_FORMATS",
    "array_source",
    "input_rows",
    "is_streamed",
    "latent_rows",
    "open_source",
    "training_rows",
    "validation_rows",
]

# Formats whose rows are read a block at a time rather than loaded (cvae.data.sources.file_format).
STREAMED_FORMATS = ("directory", "npy", "h5ad")


def is_streamed(path):
    """Whether the data at ``path`` is streamed from disk (a directory, a ``.npy`` or an
    ``.h5ad`` file, in any case) rather than read into memory."""
    return file_format(path) in STREAMED_FORMATS


def open_source(X, name="X", layer=None):
    """A row source for ``X`` when it is a path, a memory map or an AnnData; ``None`` for
    other inputs, which the caller validates as in-memory arrays.

    Parameters
    ----------
    X : object
        A directory (every ``.npy`` file under it), a ``.npy`` file, a sparse ``.npz`` file
        (``scipy.sparse.save_npz``, read into memory), an ``.h5ad`` file (read in backed
        mode, a block of rows at a time), an ``anndata.AnnData``, a ``numpy.memmap`` or
        anything else (``None``).
    name : str, default="X"
    layer : str, default=None
        For an AnnData or ``.h5ad`` file, the layer to read instead of its ``X``.

    Returns
    -------
    source : ArraySource, SparseSource, RawFileSource, NpyDirectorySource, H5adSource or None
    """
    if isinstance(X, (str, os.PathLike)):
        path = Path(X).expanduser()
        if path.is_dir():
            return NpyDirectorySource(path)
        if not path.exists():
            raise FileNotFoundError(f"No such file or directory: {str(path)!r}")
        kind = file_format(path)
        if kind == "npz":
            return SparseSource(load_sparse_npz(path), name=repr(str(path)), checked=True)
        if kind == "h5ad":
            return h5ad_source(path, layer)
        if kind != "npy":
            raise ValueError(
                f"{name}={str(path)!r}: paths must be a .npy file, a directory of .npy files, a sparse .npz file "
                "or an .h5ad file. Read other formats into memory with cvae.files.read_array."
            )
        return npy_file_source(path, vector_is_sample=False)
    anndata = sys.modules.get("anndata")  # an AnnData exists only where anndata was imported
    if anndata is not None and isinstance(X, anndata.AnnData):
        rows = anndata_rows(X, name, layer)
        return rows if hasattr(rows, "read") else array_source(check_input_array(rows, name), name)
    if isinstance(X, np.memmap):
        return memmap_source(X, name)
    return None


def array_source(array, name="X"):
    """The row source of an array or sparse matrix that has been validated as a whole."""
    if sp.issparse(array):
        return SparseSource(array, name=name, checked=True)
    return ArraySource(array, name=name, checked=True)


def training_rows(estimator, X):
    """``X`` to fit: its file, or the validated array in memory.

    Sets ``estimator.n_features_in_`` (and ``feature_names_in_`` for a table with column
    names), as scikit-learn's ``validate_data`` does.
    """
    source = open_source(X, layer=estimator.layer)
    if source is None:
        return array_source(validate_input(estimator, X, reset=True))
    if source.n_samples == 0 or source.n_features == 0:
        raise ValueError(f"X ({source.name}) holds {source.n_samples} sample(s) of {source.n_features} feature(s).")
    estimator.n_features_in_ = source.n_features
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    return source


def validation_rows(estimator, X_valid):
    """``X_valid``, as wide as the training rows (``estimator.n_features_in_``)."""
    source = open_source(X_valid, "X_valid", estimator.layer)
    if source is None:
        source = array_source(check_input_array(X_valid, "X_valid"), "X_valid")
    return _check_width(source, "X_valid", estimator.n_features_in_, "features", "but X has {} features")


def input_rows(estimator, X):
    """``X`` given to a fitted estimator, with its number of features (and the feature names
    of a table, checked by scikit-learn's ``validate_data``)."""
    source = open_source(X, layer=estimator.layer)
    if source is None:
        return array_source(validate_input(estimator, X, reset=False))
    return _check_width(source, "X", estimator.n_features_in_, "features",
                        f"but {type(estimator).__name__} is expecting {{}} features as input")


def latent_rows(Z, n_components):
    """Latent codes: an array or a ``.npy`` file of ``n_components`` columns."""
    source = open_source(Z, "Z")
    if source is None:
        source = ArraySource(check_latent(Z), name="Z", checked=True)
    return _check_width(source, "Z", n_components, "columns",
                        "but this CompressionVAE has n_components={} latent dimensions")


def _check_width(source, name, expected, unit, but):
    if source.n_features != expected:
        where = name if source.name == name else f"{name} ({source.name})"
        raise ValueError(f"{where} has {source.n_features} {unit}, {but.format(expected)}.")
    return source
