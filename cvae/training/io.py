"""Crash-safe, code-free file I/O.

Every file is written to a temporary name in the same directory, flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a crash leaves
either the old file or the new one, never a torn one. Checkpoints are read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers and
refuses anything that would run code.
"""

import contextlib
import io
import os
import pickle
import tempfile
from pathlib import Path

import torch

__all__ = ["atomic_open", "atomic_write", "load_checkpoint", "save_checkpoint"]


@contextlib.contextmanager
def atomic_open(path):
    """A binary file to write ``path`` through: renamed over it only if the block succeeds."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _default_file_mode())  # mkstemp makes 0600; give what open() would
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(data)


def _default_file_mode():
    umask = os.umask(0o022)  # the only way to read the umask is to set it
    os.umask(umask)
    return 0o666 & ~umask


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
