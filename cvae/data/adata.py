"""AnnData input: an ``anndata.AnnData`` in memory, or an ``.h5ad`` file read a block of rows
at a time. ``anndata`` (the ``anndata`` extra) is imported only here, and only when used."""

from pathlib import Path

import numpy as np

__all__ = ["H5adSource", "anndata_rows", "h5ad_source", "obs_labels", "read_h5ad"]

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


def anndata_rows(adata, name="X", layer=None):
    """An ``anndata.AnnData``'s rows: its ``X`` or ``layers[layer]``.

    A backed AnnData (``read_h5ad(..., backed="r")``) gives an :class:`H5adSource`, read
    from its file a block at a time. One in memory, or a view of a backed one (``adata[:50]``,
    which reads its own rows here), gives its matrix, for the caller to check as it checks
    an array or sparse matrix.
    """
    what = f"{name} (an AnnData)"
    if layer is not None and layer not in adata.layers:
        raise ValueError(f"{what} has no layer {layer!r}; its layers: {', '.join(adata.layers) or 'none'}.")
    if adata.isbacked and layer is None and not adata.is_view:
        return h5ad_source(adata.filename)
    matrix = adata.X if layer is None else adata.layers[layer]
    if matrix is None:
        raise ValueError(f"{what} has no X matrix; choose one of its layers with the layer parameter.")
    return matrix


def obs_labels(adata, key):
    """The labels in column ``key`` of ``adata.obs``, as an object array with ``None`` where
    a value is missing (an unlabelled row)."""
    if key not in adata.obs.columns:
        columns = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        raise ValueError(f"y={key!r} names no column of the AnnData's obs; its columns: {columns}.")
    column = adata.obs[key]
    values = column.astype(object).to_numpy()
    values[column.isna().to_numpy()] = None
    return values


def read_h5ad(path, backed=None):
    """The AnnData in the ``.h5ad`` file at ``path``, read into memory, or with ``backed="r"``
    its annotations alone (X stays in the file)."""
    _import_h5py()
    import anndata

    try:
        return anndata.read_h5ad(path, backed=backed)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"Cannot read {str(path)!r} as an AnnData: {exc}") from exc
