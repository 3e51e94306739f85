"""Reading and writing data files: .npy, .npz, .csv and directory trees of .npy files.

:func:`read_array` loads into memory; :func:`transform_to_npy` writes the output of a
fitted estimator for data of any size, a chunk at a time. These are the formats the
command line and the original CompressionVAE interface accept.
"""

import io
from pathlib import Path

import numpy as np

from ._validation import check_positive_int
from ._atomic import atomic_open, atomic_write
from .data.covariates import covariate_table, rows_of
from .data.inputs import open_source
from .data.readers import READABLE, read_array, read_labels, read_npy_directory
from .data.rows import iterate_chunks
from .data.sources import file_format

__all__ = ["READABLE", "read_array", "read_labels", "read_npy_directory", "transform_to_npy", "write_array"]


def write_array(path, array, columns=None):
    """Write ``array`` to ``.npy`` or ``.csv`` (chosen by the extension), atomically.

    ``columns`` (names, one per column) becomes the header line of a CSV file.
    """
    path = Path(path).expanduser()
    array = np.asarray(array)
    kind = file_format(path, directories=False)
    if kind not in ("npy", "csv"):
        raise ValueError(f"Cannot write {str(path)!r}: use a .npy or .csv file name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "npy":
        buffer = io.BytesIO()
        np.save(buffer, array.astype(str) if array.dtype.kind == "O" else array, allow_pickle=False)
        data = buffer.getvalue()
    else:
        buffer = io.StringIO()
        header = "" if columns is None else ",".join(str(c) for c in columns)
        fmt = "%s" if array.dtype.kind in "USO" else "%.9g"  # labels may be strings
        np.savetxt(buffer, array.reshape(len(array), -1), delimiter=",", fmt=fmt, header=header, comments="")
        data = buffer.getvalue().encode()
    atomic_write(path, data)


def transform_to_npy(estimator, X, path, *, method="transform", chunk_size=65536, covariates=None):
    """Write ``estimator.<method>(X)`` to a ``.npy`` file, ``chunk_size`` rows at a time.

    For inputs larger than memory: only one chunk of ``X`` and of the output is held at
    once, and the output is written with plain file writes (not a memory map, whose
    written pages would stay resident) to a temporary file renamed into place at the end.

    Parameters
    ----------
    estimator : fitted cvae.CompressionVAE
    X : array-like, path or numpy.memmap
        What ``method`` accepts: an array, a ``.npy`` file, a directory of ``.npy`` files
        or a memmap.
    path : str or path-like
        The ``.npy`` file to write.
    method : {"transform", "inverse_transform", "score_samples"}, default="transform"
    chunk_size : int, default=65536
    covariates : array-like, DataFrame or str, default=None
        For a model fitted with covariates, those of ``X``'s rows, as ``method`` takes them.

    Returns
    -------
    shape : tuple
        Shape of the array written.
    """
    path = Path(path).expanduser()
    if file_format(path, directories=False) != "npy":
        raise ValueError(f"Cannot write {str(path)!r}: transform_to_npy writes a .npy file.")
    if path.is_dir():
        raise ValueError(f"Cannot write {str(path)!r}: it is a directory.")
    check_positive_int(chunk_size, "chunk_size")
    if method not in ("transform", "inverse_transform", "score_samples"):
        raise ValueError(f"method must be 'transform', 'inverse_transform' or 'score_samples', got {method!r}.")
    apply = getattr(estimator, method)
    source = open_source(X, layer=getattr(estimator, "layer", None))
    if source is None:  # in memory already: one call keeps scikit-learn's checks of X intact
        out = apply(X, covariates=covariates)
        write_array(path, out)
        return out.shape
    if source.n_samples == 0:  # checked before the output is opened: an existing file stays as it was
        raise ValueError(f"X ({source.name}) holds no rows: there is nothing to write to {str(path)!r}.")
    table = covariate_table(covariates, X)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        for rows in iterate_chunks(source.n_samples, chunk_size):
            out = apply(source.read(rows.start, rows.stop), covariates=rows_of(table, rows))
            if rows.start == 0:
                shape = (source.n_samples,) + out.shape[1:]
                header = {"descr": np.lib.format.dtype_to_descr(out.dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(f, header)
            f.write(np.ascontiguousarray(out).tobytes())
    return shape
