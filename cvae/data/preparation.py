"""What a fit trains and validates on: the rows, their split, statistics and likelihood.

The estimator hands its row sources here (:func:`prepare`) and gets back a :class:`FitData`: the
training and validation rows of their sources, checked and summarized in one streaming
pass, with the rows a ``partial_fit`` replays. :mod:`cvae.data.batches` turns those rows
into what the trainer iterates over, with each row's data-space neighbours
(:mod:`cvae.data.graph`) when the neighbour term is on.
"""

import hashlib
import warnings
from dataclasses import dataclass, replace
from itertools import zip_longest

import numpy as np
import scipy.sparse as sp

from .. import _random
from .._validation import (
    check_chunk,
    check_sample_weight,
    check_unit_interval,
)
from ..nn.likelihoods import check_counts, is_count_likelihood
from .rows import (
    STREAM_BUFFER_BYTES,
    Split,
    iterate_chunks,
    rows_within,
    take_rows,
    train_validation_split,
)
from .covariates import CovariateSource, CovariateSpec
from .labels import UNLABELLED, check_labels
from .preprocessing import summarize

__all__ = ["FitData", "Rows", "prepare"]

# Rows of a sparse matrix summarized at a time (CSR blocks: their size is their stored values).
_SPARSE_CHUNK_ROWS = 65536
# partial_fit replays as many stored rows as a call brings new ones, and at least this many:
# a small call's neighbour graph then still links rows across the data seen so far.
REPLAY_MIN_ROWS = 2048


@dataclass(frozen=True)
class Rows:
    """Chosen rows (sorted indices) of a row source, how errors name them, their sample
    weights (float32, scaled to average 1 over the training rows; ``None`` when all are
    equal), their class codes (:func:`cvae.data.labels.check_labels`; ``None`` without y) and a
    digest of their values (hex; ``None`` until read), which names their neighbour graph."""

    source: object
    indices: np.ndarray
    name: str = "X"
    weights: np.ndarray = None
    labels: np.ndarray = None
    digest: str = None

    def __len__(self):
        return len(self.indices)

    def read(self):
        return take_rows(self.source, self.indices)


@dataclass(frozen=True)
class FitData:
    """The rows of one fit and what one pass over them found.

    ``held_out`` is the :class:`cvae.data.rows.Split` drawn from ``X``, or ``None`` when
    validation data was given. ``likelihood`` is the one the model uses:
    the continued run's, or the estimator's with ``"auto"`` resolved.
    """

    train: Rows
    valid: Rows
    summary: object
    valid_summary: object
    likelihood: str
    held_out: Split = None
    classes: np.ndarray = None
    upper: float = 1.0
    covariates: CovariateSpec = None

    @property
    def n_features(self):
        """The data's columns (the rows' sources carry the encoded covariates after them)."""
        return self.train.source.n_features - (0 if self.covariates is None else self.covariates.width)


def with_replay(X, y, sample_weight, stored, seed, covariates=None, stored_covariates=None):
    """``(X, y, sample_weight, covariates)``: ``X`` with rows drawn from ``stored`` (earlier
    rows, or ``None``) below it, and ``y``, ``sample_weight`` and ``covariates`` (a table,
    :func:`cvae.data.covariates.covariate_table`) extended to match (unlabelled; weight the
    mean of ``X``'s weights, so that equal weights train as no weights; the stored rows'
    own covariates, ``stored_covariates``): the earlier rows train beside the new ones,
    as replay. As many are drawn, without replacement, as ``X`` has rows, at least
    ``REPLAY_MIN_ROWS``, at most all of ``stored``; ``seed`` (integers) seeds the draw. Only
    for ``X`` in memory (an array, a sparse matrix, a DataFrame, whose column names stay, or
    a list of rows) as wide as ``stored``, with at least one row and a ``y`` and
    ``sample_weight`` of its length: other ``X`` comes back as it is, to be checked (and
    refused, for what does not match) by the fit, in terms of ``X`` alone."""
    rows_in_memory = _rows_in_memory(X)
    if stored is None or rows_in_memory is None or rows_in_memory.ndim != 2:
        return X, y, sample_weight, covariates
    X = rows_in_memory
    n = X.shape[0]
    matching = (covariates is None) == (stored_covariates is None) and (
        covariates is None or all(_one_per_row(values, n) for _, values in covariates))
    if (n == 0 or X.shape[1] != stored.shape[1] or not _one_per_row(y, n) or not _one_per_row(sample_weight, n)
            or not matching):
        return X, y, sample_weight, covariates
    count = min(len(stored), max(n, REPLAY_MIN_ROWS))
    chosen = np.sort(_random.rng("replay", *seed).permutation(len(stored))[:count])
    rows = stored[chosen]
    if sp.issparse(X):
        stacked = sp.vstack([X, sp.csr_matrix(rows)], format="csr")
    elif hasattr(X, "columns"):  # a DataFrame: its column names are checked against the fit's
        stacked = type(X)(np.vstack([X.to_numpy(dtype=np.float64), rows]), columns=X.columns)
    else:
        stacked = np.vstack([X, rows])
    if y is not None:
        y = np.asarray(y)
        text = y.dtype.kind in "UO"
        y = np.concatenate([y.astype(object) if text else y, np.full(len(rows), None if text else UNLABELLED)])
    if sample_weight is not None:
        weights = np.broadcast_to(np.asarray(sample_weight, dtype=float), (n,))
        sample_weight = np.concatenate([weights, np.full(len(rows), weights.mean())])
    if covariates is not None:
        covariates = [(name, np.concatenate([np.asarray(values, dtype=object), np.asarray(stored_values)[chosen]]))
                      for (name, values), (_, stored_values) in zip(covariates, stored_covariates)]
    return stacked, y, sample_weight, covariates


def _rows_in_memory(X):
    """``X`` as rows in memory that replay can extend (a list of numeric rows as an array),
    or ``None`` for rows read from files or memmaps, and what is not rows at all."""
    if isinstance(X, (list, tuple)):
        try:
            return np.asarray(X, dtype=np.float64)
        except (ValueError, TypeError):
            return None
    if isinstance(X, np.memmap) or not (isinstance(X, np.ndarray) or sp.issparse(X) or hasattr(X, "columns")):
        return None
    return X


def _one_per_row(values, n):
    """Whether ``values`` (labels or weights, or ``None``) give one value per row of ``n`` (a
    scalar weight does)."""
    return values is None or np.ndim(values) == 0 or (np.ndim(values) == 1 and len(values) == n)


def prepare(source, valid_source, params, seed, saved_split=None, continued=None, logdir=None, sample_weight=None,
            y=None, classes=None, feature_names=None, covariates=None):
    """Split ``source``'s rows (or take ``valid_source``'s to validate), check every row and
    summarize.

    Parameters
    ----------
    source, valid_source : row source or None
        The training data and the validation data, or ``None`` to hold out a share of
        ``source`` (:mod:`cvae.data.inputs`).
    params : dict
        The estimator's parameters; ``validation_fraction`` and ``likelihood`` are read.
    seed : int
        Seeds the split.
    saved_split : cvae.data.rows.Split, default=None
        The split of the run being continued, used again when ``X`` has as many rows.
    continued : cvae.spec.RunSpec, default=None
        The spec of the run being continued, whose number of features ``X`` must have
        and whose likelihood the data must suit.
    logdir : cvae.training.LogDir, default=None
        Where that run is, for error messages.
    sample_weight : array-like of shape (n_samples,), default=None
        Weights of ``X``'s rows. Rows of weight zero are left out before the split, exactly
        as if ``X`` did not hold them; the others weigh the training and validation terms
        and the normalization statistics. ``X_valid``'s rows weigh one each.
    y : array-like of shape (n_samples,), default=None
        Class labels of ``X``'s rows (:func:`cvae.data.labels.check_labels`).
    classes : ndarray, default=None
        The classes of the run being continued, which ``y`` may not go beyond.
    feature_names : ndarray of str, default=None
        The column names of ``X``, checked against the continued run's.
    covariates : list of (name, values), default=None
        The covariates of ``X``'s rows (:func:`cvae.data.covariates.covariate_table`),
        encoded by the continued run's :class:`~cvae.data.covariates.CovariateSpec` or a new
        one; the training and validation rows then carry them after the data's columns.

    Returns
    -------
    FitData
    """
    if continued is not None:
        _check_continued_columns(continued, source, feature_names, logdir)
    weights = None if sample_weight is None else check_sample_weight(sample_weight, source.n_samples)
    classes, codes = (classes, None) if y is None else check_labels(y, source.n_samples, classes)
    keep = np.arange(source.n_samples) if weights is None else np.flatnonzero(weights > 0)
    if weights is not None and np.ptp(weights[keep]) == 0:
        weights = None  # equal weights: the unweighted fit, bit for bit
    if valid_source is not None:
        train = Rows(source, keep, labels=None if codes is None else codes[keep])
        valid = Rows(valid_source, np.arange(valid_source.n_samples), "X_valid" if valid_source is not source else "X")
        held_out = None
    else:
        train_idx, valid_idx = _split(source.n_samples, params["validation_fraction"], seed, saved_split, keep)
        train = Rows(source, train_idx, labels=None if codes is None else codes[train_idx])
        valid = Rows(source, valid_idx, labels=None if codes is None else codes[valid_idx])
        held_out = Split(valid_idx, source.n_samples)
    if weights is not None:
        train, valid = _weighted(train, valid, weights, keep, held_out is not None)
    likelihood = params["likelihood"] if continued is None else continued.model.likelihood
    log_counts = is_count_likelihood(likelihood)
    digest = hashlib.blake2b(digest_size=16)
    train_summary = summarize(_digested(_checked_chunks(train), digest), log_counts)
    train = replace(train, digest=digest.hexdigest())
    # partial_fit validates on its training rows: unweighted, they are one pass, not two
    same_rows = valid_source is source and weights is None and len(keep) == source.n_samples
    summaries = train_summary, train_summary if same_rows else summarize(_checked_chunks(valid), log_counts)
    upper = None if continued is None else continued.upper or 1.0  # a continued run keeps its range
    likelihood, upper = _resolve_likelihood(likelihood, summaries, (train.name, valid.name), upper)
    if params["normalize"] == "global" and not is_count_likelihood(likelihood):
        _warn_if_one_feature_dominates(train_summary.scaler.scale_)
    covariate_spec = None
    if covariates is not None or (continued is not None and continued.covariates is not None):
        covariate_spec, train, valid = _with_covariates(covariates, continued, train, valid)
    return FitData(train, valid, *summaries, likelihood, held_out, classes, upper, covariate_spec)


def _with_covariates(table, continued, train, valid):
    """``(spec, train, valid)``: the covariates' spec (the continued run's, or fitted on
    ``table``) and the rows with the encoded covariates after their own columns."""
    saved = None if continued is None else continued.covariates
    if table is None:
        raise ValueError(f"The run being continued is conditioned on the covariates {list(saved.names)}: pass "
                         "covariates= with the rows.")
    if continued is not None and saved is None:
        raise ValueError("covariates were given, but the run being continued has none: fit a new model "
                         "(warm_start=False, and a new logdir) to condition on them.")
    source = train.source
    if valid.source is not source:
        raise ValueError("X_valid cannot be given with covariates: leave it out, and validation_fraction of X's rows "
                         "(with their covariates) is held out.")
    spec = saved if saved is not None else CovariateSpec.fit(table)
    encoded = spec.encode(table, source.n_samples)
    wrapped = CovariateSource(source, encoded, spec.groups(encoded))
    digest = hashlib.blake2b(f"{train.digest}".encode(), digest_size=16)
    digest.update(wrapped.encoded.view(np.uint8))  # the graph of rows with other covariates is another graph
    return spec, replace(train, source=wrapped, digest=digest.hexdigest()), replace(valid, source=wrapped)


def _check_continued_columns(continued, source, feature_names, logdir):
    """Refuse ``source`` (with ``feature_names``) for the run ``continued`` describes when
    its column names or its width differ from the run's."""
    if feature_names is not None and continued.feature_names is not None:
        pairs = zip_longest([str(n) for n in feature_names], continued.feature_names)
        given, saved = next(((a, b) for a, b in pairs if a != b), (None, None))
        if given != saved:
            raise ValueError(
                f"X's column names differ from those of the run being continued: {given!r} where it had {saved!r}. "
                "Give the columns the run was trained on."
            )
    if source.n_features != continued.n_features:
        where = "in memory" if logdir is None else f"in {str(logdir.path)!r}"
        raise ValueError(
            f"X has {source.n_features} features, but CompressionVAE is expecting "
            f"{continued.n_features} features as input: the run being continued ({where}) was trained on them."
        )


def _weighted(train, valid, weights, keep, held_out):
    """``train`` and ``valid`` with their sample weights, scaled to average 1 over the
    training rows (``valid`` too when ``held_out`` of X, else its rows weigh 1 each); a
    range float32 cannot hold is refused."""
    weights = weights / weights[keep].max()  # no overflow in the mean, whatever the weights' scale
    scale = weights[train.indices].mean()
    lost = (weights[keep] > 0) & ((weights[keep] / scale).astype(np.float32) == 0)
    if lost.any():
        raise ValueError(
            f"sample_weight spans too wide a range: {int(lost.sum())} row(s) weigh less than float32 can hold "
            f"beside the largest weight (ratio {weights[keep][lost].min():.3g}). Give those rows weight 0 to "
            "leave them out, or narrow the range."
        )
    train = replace(train, weights=(weights[train.indices] / scale).astype(np.float32))
    if held_out:
        valid = replace(valid, weights=(weights[valid.indices] / scale).astype(np.float32))
    return train, valid


# Under normalize="global", a feature whose spread is this many times the median feature's
# decides the distances alone (digits with one column scaled by 1e6: 10-NN 0.25, against 1.00).
_DOMINANT_SPREAD = 100.0


def _warn_if_one_feature_dominates(spreads):
    """Warn when one scale of normalization (``normalize="global"``) leaves a feature's spread
    ``_DOMINANT_SPREAD`` times the median feature's or more."""
    spreads = np.asarray(spreads, dtype=np.float64)
    median = np.median(spreads[spreads > 0]) if np.any(spreads > 0) else 0.0
    if median == 0 or spreads.max() < _DOMINANT_SPREAD * median:
        return
    worst = int(np.argmax(spreads))
    warnings.warn(
        f"Feature {worst}'s spread is {spreads[worst] / median:.3g} times the median feature's: under "
        "normalize='global' (one scale for all features) it decides the distances and the embedding alone. "
        "normalize='feature' scales each feature to unit variance.",
        UserWarning,
        stacklevel=6,  # the caller of fit
    )


def _split(n_samples, validation_fraction, seed, saved, keep):
    """Sorted ``(train, validation)`` row indices among the rows ``keep``: the saved split
    when it fits, else a seeded split of ``keep``, the same as of ``X[keep]``."""
    if saved is not None and saved.n_samples == n_samples:
        valid_idx = np.intersect1d(saved.validation_rows, keep)
        return np.setdiff1d(keep, valid_idx, assume_unique=True), valid_idx
    if saved is not None:
        warnings.warn(
            f"The run being continued split {saved.n_samples} samples into training and validation, but X has "
            f"{n_samples}; drawing a new split.",
            UserWarning,
            stacklevel=4,
        )
    train_idx, valid_idx = train_validation_split(len(keep), validation_fraction, seed)
    return np.sort(keep[train_idx]), np.sort(keep[valid_idx])


def _checked_chunks(rows):
    """``rows`` a buffer at a time, each checked by :func:`check_chunk`: dense arrays, or CSR
    blocks of a sparse source; paired with their weights when the rows have some."""
    source, indices = rows.source, rows.indices
    dtype = np.float64 if source.dtype == np.float64 else np.float32
    sparse = getattr(source, "sparse", False)
    chunk_rows = _SPARSE_CHUNK_ROWS if sparse else rows_within(STREAM_BUFFER_BYTES, source.n_features, dtype().itemsize)
    for part in iterate_chunks(len(indices), chunk_rows):
        chunk = source.block(indices[part]) if sparse else take_rows(source, indices[part], dtype)
        check_chunk(chunk, rows.name, slice(indices[part.start], indices[part.stop - 1] + 1), source.name)
        yield chunk if rows.weights is None else (chunk, rows.weights[part])


def _digested(chunks, digest):
    """``chunks`` unchanged, their values fed to ``digest`` on the way."""
    for item in chunks:
        chunk = item[0] if isinstance(item, tuple) else item
        parts = (chunk.data, chunk.indices, chunk.indptr) if sp.issparse(chunk) else (chunk,)
        for part in parts:
            digest.update(np.ascontiguousarray(part).view(np.uint8))
        yield item


def _resolve_likelihood(likelihood, summaries, names, upper=None):
    """``(likelihood, upper)``: ``likelihood`` with ``"auto"`` resolved, and for the Bernoulli
    the value it models as 1 (``upper``, the continued run's when given). ``"auto"`` is
    Bernoulli when every training and validation value lies in [0, 1] or, for 8-bit pixel
    values (whole numbers in [0, 255], the largest 255), in [0, 255], which it says; else
    Gaussian. Bernoulli data is checked to lie in [0, upper]."""
    train = summaries[0]
    # counts can span [0, 255] too, but rarely reach 255 exactly, as 8-bit images do
    eight_bit = all(s.integers and s.low >= 0 and s.high <= 255 for s in summaries) and train.high == 255
    if likelihood == "auto":
        in_unit_interval = all(s.low >= 0 and s.high <= 1 for s in summaries)
        likelihood = "bernoulli" if in_unit_interval or eight_bit else "gaussian"
        if likelihood == "bernoulli" and upper is None and not in_unit_interval:
            warnings.warn(
                f"{names[0]} holds whole numbers from {train.low:.0f} to {train.high:.0f}, like 8-bit pixel values: "
                "likelihood='auto' chose 'bernoulli' on the values / 255 (decoded and sampled back in [0, 255]). "
                "Set likelihood='bernoulli' to keep this choice without this warning, or likelihood='gaussian' "
                "to model the values themselves.",
                UserWarning,
                stacklevel=4,
            )
    if likelihood == "bernoulli":
        if upper is None:
            upper = 255.0 if eight_bit else 1.0
        for summary, name in zip(summaries, names):
            check_unit_interval(summary.low / upper, summary.high / upper, name, upper)
    if is_count_likelihood(likelihood):
        for summary, name in zip(summaries, names):
            check_counts(summary.low, summary.integers, name, likelihood)
        if summaries[0].high == 0:
            raise ValueError(f"likelihood={likelihood!r}: every count in {names[0]} is zero; there is nothing to fit.")
    return likelihood, upper
