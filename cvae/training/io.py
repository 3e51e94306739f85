"""Log-directory layout and crash-safe, code-free file I/O.

Every file is written to a temporary name in the same directory, flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a crash leaves
either the old file or the new one, never a torn one. Checkpoints are read with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers and
refuses anything that would run code.
"""

import contextlib
import csv
import io
import json
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch

__all__ = ["LogDir", "atomic_open", "atomic_write", "load_checkpoint", "save_checkpoint"]


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


class LogDir:
    """The files of one training run.

    ``params.json`` (estimator parameters and data shape), ``checkpoint.pt`` (model,
    optimizer, scheduler, step, random state), ``history.csv`` (one row per validation) and
    ``normalization.npz`` (feature ``loc`` and ``scale``) and ``split.npz`` (the rows held
    out for validation, and the number of rows they were drawn from).

    Parameters
    ----------
    path : str or path-like
        Directory of the run; created on the first write.
    """

    PARAMS = "params.json"
    CHECKPOINT = "checkpoint.pt"
    HISTORY = "history.csv"
    NORMALIZATION = "normalization.npz"
    SPLIT = "split.npz"

    def __init__(self, path):
        self.path = Path(path)

    def file(self, name):
        return self.path / name

    def has_run(self):
        """True if a checkpoint from an earlier fit is present."""
        return self.file(self.CHECKPOINT).is_file()

    def write_params(self, params):
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(self.file(self.PARAMS), json.dumps(params, indent=2, sort_keys=True).encode())

    def read_params(self):
        path = self.file(self.PARAMS)
        if not path.is_file():
            raise FileNotFoundError(f"No parameter file in log directory: {path}")
        try:
            return json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"Cannot read {path}: it is not valid JSON ({exc}).") from exc

    def write_checkpoint(self, state):
        self.path.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.file(self.CHECKPOINT), state)

    def read_checkpoint(self):
        return load_checkpoint(self.file(self.CHECKPOINT))

    def write_history(self, history):
        if not history:
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        atomic_write(self.file(self.HISTORY), out.getvalue().encode())

    def clear(self):
        """Delete the files of a run written here (and nothing else in the directory)."""
        if not self.path.is_dir():
            return
        names = (self.PARAMS, self.CHECKPOINT, self.HISTORY, self.NORMALIZATION, self.SPLIT)
        for path in self.path.iterdir():
            if path.name in names or path.name.startswith("events.out.tfevents."):
                path.unlink()

    def write_normalization(self, loc, scale):
        out = io.BytesIO()
        np.savez(out, loc=loc, scale=scale)
        atomic_write(self.file(self.NORMALIZATION), out.getvalue())

    def write_split(self, validation_rows, n_samples):
        out = io.BytesIO()
        np.savez(out, validation_rows=np.asarray(validation_rows, np.int64), n_samples=np.int64(n_samples))
        atomic_write(self.file(self.SPLIT), out.getvalue())

    def read_split(self):
        """``(validation_rows, n_samples)`` of the saved split, or ``None`` if there is none."""
        path = self.file(self.SPLIT)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                return saved["validation_rows"], int(saved["n_samples"])
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"Cannot read the saved train/validation split {path} ({exc}).") from exc
