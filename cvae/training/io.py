"""Checkpoint files: written atomically (:mod:`cvae._atomic`), read without running code.

Checkpoints are read with ``torch.load(weights_only=True)``, which only rebuilds tensors
and plain containers and refuses anything that would run code.
"""

import io
import pickle
from pathlib import Path

import torch

from .._atomic import atomic_write

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(path, state):
    """Serialize ``state`` (tensors, numbers, strings, lists, dicts) atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path):
    """Load a checkpoint without executing code from it.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is truncated or corrupt, or holds objects other than tensors and plain
        containers (a pickle that would run code on load is refused here).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"Refusing to load {path}: it contains Python objects other than tensors and plain "
            f"containers, and loading them could execute code. ({exc})"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ValueError(f"Cannot read checkpoint {path}: the file is truncated or corrupt ({exc}).") from exc
