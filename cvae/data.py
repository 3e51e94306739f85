"""Train/validation split and mini-batches of in-memory data."""

import numpy as np
import torch

__all__ = ["BatchIterator", "iterate_chunks", "train_validation_split"]


def train_validation_split(n_samples, validation_fraction, seed):
    """Shuffled row indices ``(train, validation)`` with ``validation_fraction`` held out.

    At least one row is held out, so a handful of samples can still be fitted.

    Raises
    ------
    ValueError
        If either part would be empty (fewer than 2 samples).
    """
    n_valid = max(1, int(round(n_samples * validation_fraction)))
    if n_valid < 1 or n_valid >= n_samples:
        raise ValueError(
            f"Cannot hold out validation_fraction={validation_fraction} of {n_samples} samples: "
            f"that leaves {n_valid} validation and {n_samples - n_valid} training samples, and both "
            "need at least one. Provide more samples, change validation_fraction, or pass X_valid."
        )
    perm = np.random.default_rng(seed).permutation(n_samples)
    return perm[n_valid:], perm[:n_valid]


class BatchIterator:
    """Endless shuffled mini-batches of a tensor that already lives on the device.

    Each epoch draws one permutation on the device, so a batch is one index gather: no
    per-sample Python work and no host-device traffic. Permutations come from torch's
    default generator, which the trainer seeds inside ``torch.random.fork_rng`` so that the
    caller's global random state is left untouched.

    Parameters
    ----------
    data : torch.Tensor of shape (n_samples, n_features)
        Training rows, on the training device.
    batch_size : int
        Rows per batch (the last batch of an epoch may be smaller).
    """

    def __init__(self, data, batch_size):
        self.data = data
        self.batch_size = min(batch_size, len(data))
        self._perm = None
        self._pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._perm is None or self._pos >= len(self._perm):
            self._perm = torch.randperm(len(self.data), device=self.data.device)
            self._pos = 0
        index = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return self.data[index]

    def state_dict(self):
        return {"perm": self._perm, "pos": self._pos}

    def load_state_dict(self, state):
        self._perm = state["perm"]
        self._pos = state["pos"]


def iterate_chunks(n_samples, chunk_size):
    """Yield ``slice`` objects that cover ``range(n_samples)`` in chunks."""
    for start in range(0, n_samples, chunk_size):
        yield slice(start, min(start + chunk_size, n_samples))
