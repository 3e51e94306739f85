"""AnnData input: an ``anndata.AnnData`` in memory, or an ``.h5ad`` file read a block of rows
at a time. ``anndata`` (the ``anndata`` extra) is imported only here, and only when used."""

from pathlib import Path

import numpy as np

__all__ = ["H5adSource", "anndata_source", "h5ad_source"]

_EXTRA = "pip install anndata"


def _import_h5py():
    try:
        import anndata  # noqa: F401 (the package that wrote the file also reads its sparse groups)
        import h5py
    except ImportError as exc:
        raise ImportError(f"Reading .h5ad files needs the anndata package: {_EXTRA}") from exc
    return h5py


def _element(file, layer, name):
    """The HDF5 dataset or sparse group holding ``X`` or ``layers/<layer>``."""
    if layer is None:
        if "X" not in file:
            raise ValueError(f"{name} has no X matrix; choose one of its layers with the layer parameter.")
        return file["X"]
    layers = file["layers"] if "layers" in file else {}
    if layer not in layers:
        raise ValueError(f"{name} has no layer {layer!r}; its layers: {', '.join(layers) or 'none'}.")
    return layers[layer]


class H5adSource:
    """Rows of the ``X`` matrix (or a layer) of an ``.h5ad`` file, read on demand.

    A dense matrix and a CSR matrix are read a block of rows at a time; a CSC matrix, which
    cannot be read by rows, is refused with the fix.

    Parameters
    ----------
    path : path-like
    layer : str, default=None
        A key of the file's ``layers``; ``None`` reads ``X``.
    """

    in_memory = False
    checked = False

    def __init__(self, path, layer=None):
        self.path = Path(path)
        self.layer = layer
        self.name = repr(str(path)) + ("" if layer is None else f" (layer {layer!r})")
        h5py = _import_h5py()
        try:
            with h5py.File(self.path, "r") as file:
                element = _element(file, layer, repr(str(path)))
                encoding = element.attrs.get("encoding-type", "array")
                if isinstance(encoding, bytes):
                    encoding = encoding.decode()
                if encoding == "csc_matrix":
                    raise ValueError(
                        f"{self.name} is stored by columns (CSC), which cannot be read a row at a time. Load it "
                        "with anndata.read_h5ad and pass the AnnData, or rewrite it as CSR."
                    )
                if encoding not in ("array", "csr_matrix"):
                    raise ValueError(f"{self.name} holds a {encoding}, not a matrix of numbers.")
                self.sparse_on_disk = encoding == "csr_matrix"
                shape = tuple(element.attrs["shape"]) if self.sparse_on_disk else element.shape
                dtype = element["data"].dtype if self.sparse_on_disk else element.dtype
        except OSError as exc:
            raise ValueError(f"{str(path)!r} is not a readable .h5ad file ({exc}).") from exc
        if len(shape) != 2:
            raise ValueError(f"{self.name} holds an array of shape {shape}; expected 2-D.")
        if np.dtype(dtype).kind not in "biuf":
            raise ValueError(f"{self.name} holds dtype {dtype}; CompressionVAE needs numbers.")
        self.n_samples, self.n_features = (int(n) for n in shape)
        self.dtype = np.dtype(dtype)

    def read(self, start, stop):
        """Rows ``start:stop`` as a dense array."""
        h5py = _import_h5py()
        with h5py.File(self.path, "r") as file:
            element = _element(file, self.layer, self.name)
            if not self.sparse_on_disk:
                return np.asarray(element[start:stop])
            from anndata.io import sparse_dataset

            return sparse_dataset(element)[start:stop].toarray()


def h5ad_source(path, layer=None):
    """An :class:`H5adSource` for ``path``, checked to hold samples."""
    source = H5adSource(path, layer)
    if source.n_samples == 0 or source.n_features == 0:
        raise ValueError(f"{source.name} holds {source.n_samples} sample(s) of {source.n_features} feature(s).")
    return source


def anndata_source(adata, name="X", layer=None):
    """A row source for an ``anndata.AnnData``: its ``X`` or ``layers[layer]``.

    A backed AnnData (``read_h5ad(..., backed="r")``) is read from its file a block at a
    time, and a view of one (``adata[:50]``) reads its own rows; one in memory gives its
    matrix, checked as an array or sparse matrix would be.
    """
    from ._validation import check_input_array, source_of

    what = f"{name} (an AnnData)"
    if layer is not None and layer not in adata.layers:
        raise ValueError(f"{what} has no layer {layer!r}; its layers: {', '.join(adata.layers) or 'none'}.")
    if adata.isbacked and layer is None and not adata.is_view:
        return h5ad_source(adata.filename)
    # a view of a backed AnnData reads just its rows from the file, here
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError(f"{what} has no X matrix; choose one of its layers with the layer parameter.")
    return source_of(check_input_array(matrix, name), name)
