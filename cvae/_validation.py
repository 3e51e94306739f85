"""Input checks, device resolution and seeds.

This is the only module that imports private scikit-learn helpers.
"""

import os
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions  # noqa: F401 (re-exported)
from sklearn.utils.validation import _check_sample_weight, check_array, validate_data

__all__ = [
    "Interval",
    "StrOptions",
    "check_chunk",
    "check_finite_float",
    "check_input_array",
    "check_latent",
    "check_params",
    "check_positive",
    "check_sample_weight",
    "check_unit_interval",
    "draw_seed",
    "resolve_device",
    "validate_input",
]

_FLOAT_DTYPES = (np.float32, np.float64)


# Sparse formats taken as input; each is converted to CSR, which reads rows cheaply.
_SPARSE_FORMATS = ("csr", "csc", "coo")


def validate_input(estimator, X, *, reset):
    """Check ``X`` like scikit-learn does and return it as a 2-D float array or CSR matrix.

    Integer, boolean and float16 inputs are converted to float32; float64 stays float64 so
    that outputs can match the input precision. Sparse matrices and arrays (CSR, CSC, COO)
    become CSR, without densifying. ``reset=True`` records
    ``n_features_in_``/``feature_names_in_``; otherwise they are checked.
    """
    return _as_float_rows(validate_data(estimator, X, reset=reset, dtype=_FLOAT_DTYPES, accept_sparse=_SPARSE_FORMATS))


def check_input_array(X, name):
    """``X`` checked as :func:`validate_input` does, without an estimator's feature record
    (``name`` names it in errors)."""
    return _as_float_rows(check_array(X, dtype=_FLOAT_DTYPES, accept_sparse=_SPARSE_FORMATS, input_name=name))


def _as_float_rows(X):
    if sp.issparse(X):
        X = X.tocsr()
    return X if X.dtype in _FLOAT_DTYPES else X.astype(np.float32)


def check_latent(Z):
    """Latent codes as a 2-D, finite float array (sparse input densified: its columns are few)."""
    Z = check_array(Z, dtype=_FLOAT_DTYPES, accept_sparse=_SPARSE_FORMATS, input_name="Z")
    return Z.toarray() if sp.issparse(Z) else Z


def check_finite_float(X, name):
    """Raise ``ValueError`` naming ``name`` when ``X`` holds values too large for float32."""
    if X.dtype.itemsize <= 4 or X.size == 0:  # float32 holds nothing beyond its range but inf
        return
    big = max(-X.min(), X.max())  # no |X| temporary: inputs can be gigabytes
    if big > np.finfo(np.float32).max:
        raise ValueError(
            f"{name} contains values up to {big:.3g}, beyond float32's range; rescale the data."
        )


def check_chunk(chunk, name, rows, where):
    """Check rows read from a file or memmap: finite, within float32's range.

    ``rows`` (a slice) and ``where`` (the source's name) locate the problem in the message.
    A sparse chunk's stored values are checked.
    """
    if sp.issparse(chunk):
        chunk = chunk.data
    if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
        what = "NaN" if np.isnan(chunk).any() else "infinity"
        raise ValueError(f"{name} contains {what} in rows {rows.start} to {rows.stop - 1} of {where}.")
    check_finite_float(chunk, name)


def check_unit_interval(low, high, name, upper=1.0):
    """Raise ``ValueError`` unless ``name``'s values divided by ``upper``, ranging over
    [low, high], lie in [0, 1]."""
    if low < 0 or high > 1:
        interval = "[0, 1]" if upper == 1.0 else f"[0, {upper:g}] (the run's range)"
        raise ValueError(
            f"likelihood='bernoulli' needs {name} in {interval}, but its values range from {low * upper:.4g} "
            f"to {high * upper:.4g}. Rescale it (e.g. divide intensities by their maximum) or use "
            "likelihood='gaussian'."
        )


def check_sample_weight(sample_weight, n_samples):
    """``sample_weight`` as float64: one finite, non-negative number per row, not all zero."""
    if isinstance(sample_weight, (Real, np.number)):
        if not np.isfinite(sample_weight):
            raise ValueError(f"sample_weight must be a finite number, got {sample_weight!r}.")
    elif sample_weight is not None:
        values = np.asarray(sample_weight)
        if values.ndim == 1 and values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = np.flatnonzero(~np.isfinite(values))
            raise ValueError(
                f"sample_weight holds {len(bad)} non-finite value(s) (NaN or infinity), first at row {bad[0]}: "
                f"{values[bad[0]]!r}."
            )
    weights = _check_sample_weight(sample_weight, np.empty((n_samples, 0)), dtype=np.float64,
                                   ensure_non_negative=True)
    if not np.any(weights > 0):  # scikit-learn before 1.7 lets all zeros through
        raise ValueError("sample_weight is zero for every row of X: there is nothing to fit.")
    return weights


# Parameters that take numbers, where a bool (an int to Python) is a mistake.
_NUMBER_PARAMS = (
    "n_components", "iaf_flow_length", "beta", "kl_warmup_steps", "free_bits", "neighbor_weight", "n_neighbors",
    "neighbor_samples", "dropout", "batch_size", "eval_batch_size", "learning_rate_init", "max_steps",
    "validation_fraction", "validation_interval", "patience", "learning_rate_factor", "learning_rate_min", "tol",
    "n_iter_no_change", "checkpoint_interval", "n_jobs", "target_weight", "classifier_weight",
    "landmark_weight", "reconstruction_fraction",
)


def check_params(estimator):
    """The checks of a ``CompressionVAE``'s parameters that ``_parameter_constraints`` cannot
    express (run after them, in ``fit`` and ``load``)."""
    for name in _NUMBER_PARAMS:
        if isinstance(getattr(estimator, name), (bool, np.bool_)):
            raise ValueError(f"{name} must be a number, not a bool; got {getattr(estimator, name)!r}.")
    cpus = os.cpu_count() or 1
    if estimator.n_jobs is not None and estimator.n_jobs > cpus:
        raise ValueError(
            f"n_jobs={estimator.n_jobs} asks for more CPU threads than this machine's {cpus} CPUs, which only "
            "slows training; give at most that, or None to choose."
        )
    sizes = estimator.hidden_layer_sizes
    if sizes is not None and not _positive_integers(sizes):
        raise ValueError(f"hidden_layer_sizes must be a non-empty sequence of positive integers, got {sizes!r}.")
    if estimator.placement == "neighbors" and not estimator.store_rows:
        raise ValueError(
            "placement='neighbors' places rows by the training rows the model keeps, and store_rows=False keeps "
            "none: set placement='encoder' (or 'auto'), or store_rows=True."
        )
    if estimator.tensorboard and estimator.logdir is None:
        raise ValueError("tensorboard=True writes event files into logdir; set logdir too.")
    if estimator.logdir is not None and not str(estimator.logdir).strip():
        raise ValueError("logdir='' names no directory; give a path, or None to write nothing.")
    rate, minimum = estimator.learning_rate_init, estimator.learning_rate_min
    if estimator.learning_rate != "constant" and rate < minimum:
        consequence = {"adaptive": "the adaptive schedule would stop at the first validation",
                       "cosine": "the cosine schedule would raise the rate to its floor"}[estimator.learning_rate]
        raise ValueError(
            f"learning_rate_init={rate} is below learning_rate_min={minimum}: {consequence}. Raise "
            "learning_rate_init or lower learning_rate_min."
        )


def _positive_integers(sizes):
    try:
        return len(sizes) > 0 and all(not isinstance(s, bool) and float(s).is_integer() and s >= 1 for s in sizes)
    except (TypeError, ValueError, OverflowError):
        return False


def is_positive_int(value):
    """Whether ``value`` is an integer (not a bool) of at least 1: the one test of it."""
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def check_positive_int(value, name):
    """``value`` as an int, or a ``ValueError`` naming ``name`` unless :func:`is_positive_int`."""
    if not is_positive_int(value):
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def check_positive(value, name):
    """``value`` as a float, or a ``ValueError`` unless it is a finite number above 0."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < np.inf:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def draw_seed(random_state):
    """An integer seed from an int, a ``RandomState`` or ``None`` (fresh entropy)."""
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def resolve_device(device):
    """Turn ``"auto"`` into CUDA, then Apple MPS, then CPU; check an explicit choice exists.

    Returns
    -------
    device : torch.device
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a device: {exc}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={str(device)!r}: CompressionVAE runs on 'cpu', 'cuda' or 'mps' (or 'auto').")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} was requested but CUDA is not available; use device='auto' or 'cpu'.")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"device={str(device)!r} was requested but Apple MPS is not available; use device='auto' or "
                         "'cpu'.")
    return device
