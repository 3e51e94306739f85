"""Input checks, device resolution and seeds.

This is the only module that imports private scikit-learn helpers.
"""

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions  # noqa: F401 (re-exported)
from sklearn.utils.validation import check_array, validate_data

from .sources import ArraySource, open_source

__all__ = [
    "Interval",
    "StrOptions",
    "check_chunk",
    "check_finite_float",
    "check_latent",
    "check_latent_rows",
    "check_rows",
    "check_unit_interval",
    "draw_seed",
    "isolated_rng",
    "resolve_device",
    "validate_input",
]

_FLOAT_DTYPES = (np.float32, np.float64)


def _reject_unsupported(X):
    if sp.issparse(X):
        raise TypeError(
            "CompressionVAE does not accept sparse matrices: a VAE reads every feature of every "
            "sample. Convert with X.toarray() if it fits in memory, or reduce it first with "
            "sklearn.decomposition.TruncatedSVD."
        )


def validate_input(estimator, X, *, reset, name="X"):
    """Check ``X`` like scikit-learn does and return it as a 2-D float array.

    Integer, boolean and float16 inputs are converted to float32; float64 stays float64 so
    that outputs can match the input precision. ``reset=True`` records
    ``n_features_in_``/``feature_names_in_``; otherwise they are checked.
    """
    _reject_unsupported(X)
    if name == "X":
        X = validate_data(estimator, X, reset=reset, dtype=_FLOAT_DTYPES)
    else:
        X = check_array(X, dtype=_FLOAT_DTYPES, input_name=name)
        if X.shape[1] != estimator.n_features_in_:
            raise ValueError(
                f"{name} has {X.shape[1]} features, but X has {estimator.n_features_in_} features."
            )
    if X.dtype not in _FLOAT_DTYPES:
        X = X.astype(np.float32)
    return X


def check_latent(Z, n_components):
    """Check latent codes for ``inverse_transform``: 2-D, finite, ``n_components`` columns."""
    _reject_unsupported(Z)
    Z = check_array(Z, dtype=_FLOAT_DTYPES, input_name="Z")
    if Z.shape[1] != n_components:
        raise ValueError(
            f"Z has {Z.shape[1]} columns, but this CompressionVAE has n_components={n_components} "
            "latent dimensions."
        )
    return Z


def check_rows(estimator, X):
    """A row source for input to a fitted estimator: a validated array, or a ``.npy`` file, a
    directory of them or a memmap with the estimator's number of features."""
    source = open_source(X)
    if source is None:
        return ArraySource(validate_input(estimator, X, reset=False), checked=True)
    if source.n_features != estimator.n_features_in_:
        raise ValueError(
            f"X ({source.name}) has {source.n_features} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    return source


def check_latent_rows(Z, n_components):
    """A row source for latent codes: a validated array or a ``.npy`` file of ``n_components`` columns."""
    source = open_source(Z, "Z")
    if source is None:
        return ArraySource(check_latent(Z, n_components), name="Z", checked=True)
    if source.n_features != n_components:
        raise ValueError(
            f"Z ({source.name}) has {source.n_features} columns, but this CompressionVAE has "
            f"n_components={n_components} latent dimensions."
        )
    return source


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
    """
    if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
        what = "NaN" if np.isnan(chunk).any() else "infinity"
        raise ValueError(f"{name} contains {what} in rows {rows.start} to {rows.stop - 1} of {where}.")
    check_finite_float(chunk, name)


def check_unit_interval(low, high, name):
    """Raise ``ValueError`` unless ``name``'s values, ranging over [low, high], lie in [0, 1]."""
    if low < 0 or high > 1:
        raise ValueError(
            f"likelihood='bernoulli' needs {name} in [0, 1], but its values range from {low:.4g} "
            f"to {high:.4g}. Rescale it (e.g. divide pixels by 255) or use likelihood='gaussian'."
        )


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


def isolated_rng(device):
    """Context in which torch's global generators may be reseeded without leaking out.

    Dropout and ``randn_like`` draw from torch's default generators, which take no
    ``generator=`` argument; forking them keeps a fit reproducible from its own seed while
    the caller's random state is restored on exit.
    """
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)
