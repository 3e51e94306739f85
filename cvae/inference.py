"""A fitted module applied to rows in batches: what transform, inverse_transform and
score_samples share."""

import numpy as np
import torch

from ._validation import check_chunk, check_finite_float
from .data import iterate_chunks

__all__ = ["run_batched"]


def run_batched(fn, source, n_out, batch_size, device, name, check=None):
    """Apply ``fn`` to float32 tensors of ``source``'s rows, ``batch_size`` rows at a time.

    Returns numpy, float64 for float64 input and float32 otherwise. Rows read from a file
    or memmap are checked here, a batch at a time, and every batch by ``check(rows, name)``
    when given (what the model needs of its input, e.g. counts).
    """
    dtype = np.float64 if source.dtype == np.float64 else np.float32
    out = np.empty((source.n_samples, n_out), dtype=dtype)
    with torch.inference_mode():
        for rows in iterate_chunks(source.n_samples, batch_size):
            batch = source.read(rows.start, rows.stop)
            if source.checked:  # NaN and infinity are already ruled out
                check_finite_float(batch, name)
            else:
                check_chunk(batch, name, rows, source.name)
            if check is not None:
                check(batch, name)
            out[rows] = fn(_as_tensor(batch, device)).cpu().numpy()
    return out


def _as_tensor(array, device):
    """float32 tensor on ``device``; read-only arrays (e.g. memmaps) are copied, not shared."""
    array = np.asarray(array, dtype=np.float32)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, dtype=np.float32, order="C")
    return torch.from_numpy(array).to(device)
