"""Covariates: what each row was measured under (its batch, donor, technology, a dose), read,
checked and encoded as columns that the model is conditioned on.

A categorical covariate becomes one indicator column per category, a continuous one a
single standardized column. :class:`CovariateSpec` is what a fit learns of them (the
categories, the statistics), stored in the run and validated on read; its
:meth:`CovariateSpec.encode` turns the covariates of any later call into the same columns,
and refuses a category it has not seen. :class:`CovariateSource` puts the encoded columns
beside a row source's own, so that the rows a fit trains, stores and places carry them.
"""

import os
import sys
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from .adata import read_h5ad
from .readers import read_labels
from .rows import take_rows
from .sources import file_format

__all__ = ["CATEGORICAL", "CONTINUOUS", "Covariate", "CovariateSource", "CovariateSpec", "covariate_table", "rows_of"]

CATEGORICAL = "categorical"
CONTINUOUS = "continuous"


@dataclass(frozen=True)
class Covariate:
    """One covariate: its name, its kind and what the fit learned of it.

    Attributes
    ----------
    name : str
    kind : {"categorical", "continuous"}
    categories : tuple of str or None
        A categorical covariate's categories as text, in the order of their columns.
    mean, scale : float or None
        A continuous covariate's mean and standard deviation (``scale > 0``).
    """

    name: str
    kind: str
    categories: tuple = None
    mean: float = None
    scale: float = None

    @property
    def width(self):
        return len(self.categories) if self.kind == CATEGORICAL else 1

    def to_dict(self):
        if self.kind == CATEGORICAL:
            return {"name": self.name, "kind": self.kind, "categories": list(self.categories)}
        return {"name": self.name, "kind": self.kind, "mean": float(self.mean), "scale": float(self.scale)}


@dataclass(frozen=True)
class CovariateSpec:
    """The covariates a model is conditioned on, in the order of their encoded columns."""

    columns: tuple

    @property
    def width(self):
        """The number of encoded columns."""
        return sum(c.width for c in self.columns)

    @property
    def names(self):
        return tuple(c.name for c in self.columns)

    @classmethod
    def fit(cls, table):
        """The spec of ``table`` (:func:`covariate_table`): each categorical covariate's
        sorted categories, each continuous one's mean and standard deviation."""
        columns = []
        for name, values in table:
            if _is_categorical(values):
                texts = _category_texts(values, name)
                columns.append(Covariate(name, CATEGORICAL, tuple(sorted(set(texts.tolist())))))
            else:
                values = _finite_floats(values, name)
                scale = float(values.std())
                scale = scale if scale > 0 else 1.0  # a constant covariate: centred, not scaled
                columns.append(Covariate(name, CONTINUOUS, mean=float(values.mean()), scale=scale))
        return cls(tuple(columns))

    def encode(self, table, n_samples, what="covariates"):
        """``table``'s covariates as float32 columns of shape ``(n_samples, width)``.

        Raises
        ------
        ValueError
            When ``table`` has other covariates, another number of rows, a missing value or a
            category this spec does not have (naming it, and how to add it).
        """
        self._check_names(table, what)
        out = np.zeros((n_samples, self.width), dtype=np.float32)
        start = 0
        for column, (_, values) in zip(self.columns, table):
            if len(values) != n_samples:
                raise ValueError(f"{what}[{column.name!r}] has {len(values)} values, but X has {n_samples} rows.")
            if column.kind == CONTINUOUS:
                if _is_categorical(values):
                    raise ValueError(f"{what}[{column.name!r}] holds categories, but the model was fitted with it as "
                                     "a continuous covariate (float values).")
                out[:, start] = (_finite_floats(values, column.name, what) - column.mean) / column.scale
            else:
                texts = _category_texts(values, column.name, what)
                lookup = {c: i for i, c in enumerate(column.categories)}
                codes = np.fromiter((lookup.get(t, -1) for t in texts.tolist()), dtype=np.int64, count=len(texts))
                if (codes < 0).any():
                    unseen = sorted(set(texts[codes < 0].tolist()))
                    raise ValueError(
                        f"{what}[{column.name!r}] holds categories the model was not fitted with: "
                        f"{', '.join(map(repr, unseen[:5]))}; it knows {', '.join(map(repr, column.categories[:10]))}."
                        " To add a category, train on rows of it: partial_fit(X_new, covariates=C_new) adds new "
                        "categories of a categorical covariate."
                    )
                out[np.arange(n_samples), start + codes] = 1.0
            start += column.width
        return out

    def groups(self, encoded):
        """Each row's combination of categories of the categorical covariates, as an integer
        code (``None`` without a categorical covariate): the batches a neighbour graph is
        balanced over."""
        codes, start, found = np.zeros(len(encoded), dtype=np.int64), 0, False
        for column in self.columns:
            if column.kind == CATEGORICAL:
                codes = codes * column.width + np.asarray(encoded[:, start : start + column.width]).argmax(axis=1)
                found = True
            start += column.width
        return np.unique(codes, return_inverse=True)[1].reshape(-1) if found else None

    def decode(self, encoded):
        """The table (:func:`covariate_table`) that :meth:`encode` turned into ``encoded``:
        each categorical covariate's category (as text), each continuous one's value."""
        table, start = [], 0
        for column in self.columns:
            block = np.asarray(encoded[:, start : start + column.width], dtype=np.float64)
            if column.kind == CATEGORICAL:
                values = np.asarray(column.categories, dtype=object)[block.argmax(axis=1)]
            else:
                values = block[:, 0] * column.scale + column.mean
            table.append((column.name, values))
            start += column.width
        return table

    def extended(self, table, what="covariates"):
        """This spec with the categories of ``table`` it lacks appended to each categorical
        covariate, and where their columns go: ``(spec, inserted)``, ``inserted`` one
        ``(start, stop)`` per new column, the old encoding's columns of its covariate (the
        new column goes before ``stop``)."""
        self._check_names(table, what)
        columns, inserted, start = [], [], 0
        for column, (_, values) in zip(self.columns, table):
            if column.kind == CATEGORICAL:
                new = sorted(set(_category_texts(values, column.name, what).tolist()) - set(column.categories))
                inserted += [(start, start + column.width)] * len(new)
                start += column.width
                column = replace(column, categories=column.categories + tuple(new))
            else:
                start += column.width
            columns.append(column)
        return CovariateSpec(tuple(columns)), inserted

    def _check_names(self, table, what):
        names = tuple(name for name, _ in table)
        if names != self.names:
            raise ValueError(f"{what} names {list(names)}, but the model was fitted with the covariates "
                             f"{list(self.names)}, in that order.")

    def to_dict(self):
        return [c.to_dict() for c in self.columns]

    @classmethod
    def from_dict(cls, data):
        """Rebuild and validate a spec written by :meth:`to_dict`; ``ValueError`` names the fault."""
        if not isinstance(data, list) or not data:
            raise ValueError("covariates must be a non-empty list of covariates")
        columns = []
        for item in data:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ValueError(f"covariates: each covariate must be an object with a name, got {item!r}")
            kind = item.get("kind")
            if kind == CATEGORICAL:
                categories = item.get("categories")
                if (set(item) != {"name", "kind", "categories"} or not isinstance(categories, list) or not categories
                        or not all(isinstance(c, str) for c in categories) or len(set(categories)) != len(categories)):
                    raise ValueError(f"covariates: {item['name']!r} must list its distinct categories as text")
                columns.append(Covariate(item["name"], kind, tuple(categories)))
            elif kind == CONTINUOUS:
                mean, scale = item.get("mean"), item.get("scale")
                numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
                              for v in (mean, scale))
                if set(item) != {"name", "kind", "mean", "scale"} or not numbers or scale <= 0:
                    raise ValueError(f"covariates: {item['name']!r} must have a finite mean and a positive scale")
                columns.append(Covariate(item["name"], kind, mean=float(mean), scale=float(scale)))
            else:
                raise ValueError(f"covariates: {item['name']!r} has kind {kind!r}, not {CATEGORICAL!r} or "
                                 f"{CONTINUOUS!r}")
        if len({c.name for c in columns}) != len(columns):
            raise ValueError("covariates: two covariates share a name")
        return cls(tuple(columns))


def covariate_table(covariates, X=None, what="covariates"):
    """``covariates`` as given to a public method, as a list of ``(name, values)`` columns,
    or ``None``.

    - a 1-D array-like: one covariate, named ``"covariate"``;
    - a ``pandas.DataFrame``: one covariate per column, categorical for category, object,
      string, bool and integer columns, continuous for float columns;
    - a 2-D array: one covariate per column (``"covariate_0"``, ...), of its dtype's kind;
    - for an AnnData ``X`` (or an ``.h5ad`` path), the name of a column of its ``obs``, or
      several, as a list or separated by commas;
    - a path to a file of one value per row (:func:`cvae.files.read_labels`);
    - a table this function returned (a list of ``(name, values)`` pairs).
    """
    if covariates is None:
        return None
    if _is_table(covariates):
        return [(name, np.asarray(values)) for name, values in covariates]
    names = _obs_names(covariates)
    adata = _anndata_of(X) if names is not None else None
    if adata is not None:
        missing = [n for n in names if n not in adata.obs.columns]
        if missing:
            columns = ", ".join(map(str, adata.obs.columns[:20])) or "none"
            raise ValueError(f"{what}={covariates!r} names no column {missing[0]!r} of the AnnData's obs; its "
                             f"columns: {columns}.")
        covariates = adata.obs[names]
    elif isinstance(covariates, (str, os.PathLike)):
        if not os.path.exists(os.path.expanduser(covariates)):
            raise ValueError(f"{what}={str(covariates)!r} is neither a file nor, for an AnnData X, a column of its "
                             "obs.")
        covariates = read_labels(covariates)
    if hasattr(covariates, "columns") and hasattr(covariates, "dtypes"):  # a DataFrame
        table = [(str(name), _frame_column(covariates[name])) for name in covariates.columns]
    else:
        values = np.asarray(covariates)
        if values.ndim == 1:
            table = [("covariate", values)]
        elif values.ndim == 2 and values.shape[1] > 0:
            table = [(f"covariate_{j}", values[:, j]) for j in range(values.shape[1])]
        else:
            raise ValueError(f"{what} must be one value per row (1-D), a table of columns (2-D or a DataFrame), "
                             f"or names of AnnData obs columns; got shape {values.shape}.")
    if not table:
        raise ValueError(f"{what} has no columns.")
    return table


def _is_table(covariates):
    return (isinstance(covariates, list) and covariates and all(
        isinstance(c, tuple) and len(c) == 2 and isinstance(c[0], str) and hasattr(c[1], "__len__")
        for c in covariates))


def rows_of(table, rows):
    """The covariate table of rows ``rows`` (a slice) of ``table``; ``None`` for ``None``."""
    return None if table is None else [(name, np.asarray(values)[rows]) for name, values in table]


def _obs_names(covariates):
    """The obs column names ``covariates`` gives (a name, names separated by commas, or a
    list of names), or ``None``."""
    if isinstance(covariates, str):
        return [n.strip() for n in covariates.split(",") if n.strip()]
    if isinstance(covariates, (list, tuple)) and covariates and all(isinstance(n, str) for n in covariates):
        return list(covariates)
    return None


def _anndata_of(X):
    """``X`` as an AnnData when it is one (or an ``.h5ad`` path, opened backed), else ``None``."""
    anndata = sys.modules.get("anndata")  # an AnnData exists only where anndata was imported
    if anndata is not None and isinstance(X, anndata.AnnData):
        return X
    if isinstance(X, (str, os.PathLike)) and file_format(X, directories=False) == "h5ad":
        return read_h5ad(X, backed="r")
    return None


def _frame_column(series):
    """A DataFrame column as an array: categories and booleans as objects, so they stay categorical."""
    kind = str(series.dtype)
    if kind in ("category", "bool", "boolean") or kind.startswith("string"):
        return series.astype(object).to_numpy()
    return series.to_numpy()


def _is_categorical(values):
    return np.asarray(values).dtype.kind in "biuOUS"


def _category_texts(values, name, what="covariates"):
    """Categories as text; a missing value (None, NaN, pandas' NA) is refused."""
    values = np.asarray(values)
    if values.dtype.kind == "O":
        missing = [i for i, v in enumerate(values.tolist())
                   if v is None or type(v).__name__ == "NAType" or (isinstance(v, float) and np.isnan(v))]
        if missing:
            raise ValueError(f"{what}[{name!r}] has a missing value at row {missing[0]}: every row needs its "
                             "category.")
    if values.dtype.kind == "b":
        values = values.astype(bool)
    return np.asarray([str(v) for v in values.tolist()], dtype=object)


def _finite_floats(values, name, what="covariates"):
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"{what}[{name!r}] has a non-finite value at row {row}: {values[row]}.")
    return values


class CovariateSource:
    """A row source whose rows are ``source``'s followed by ``encoded`` covariate columns.

    Parameters
    ----------
    source : row source
        See :mod:`cvae.data.sources`.
    encoded : ndarray of shape (source.n_samples, width), float32
        :meth:`CovariateSpec.encode` of the rows' covariates.
    groups : ndarray of shape (source.n_samples,) of int, default=None
        :meth:`CovariateSpec.groups` of the rows, over which their neighbour graph is balanced.
    """

    def __init__(self, source, encoded, groups=None):
        self.source = source
        self.groups = groups
        self.encoded = np.asarray(encoded, dtype=np.float32)
        self.n_samples = source.n_samples
        self.n_data = source.n_features
        self.n_features = source.n_features + self.encoded.shape[1]
        self.dtype = source.dtype
        self.name = source.name
        self.in_memory = source.in_memory
        self.checked = source.checked
        self.sparse = getattr(source, "sparse", False)

    def read(self, start, stop):
        block = self.source.read(start, stop)
        return np.hstack([block, self.encoded[start:stop].astype(block.dtype, copy=False)])

    def take(self, indices, dtype=np.float32):
        return np.hstack([take_rows(self.source, indices, dtype), self.encoded[indices].astype(dtype, copy=False)])

    def block(self, indices):
        """Rows ``indices`` as a CSR matrix (a sparse source's)."""
        return sp.hstack([self.source.block(indices), sp.csr_matrix(self.encoded[indices])], format="csr")
