"""Crash-safe file writes, with the standard library alone.

Every file is written to a temporary name in the same directory, flushed to disk, then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a crash leaves
either the old file or the new one, never a torn one.
"""

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["TEMPORARY_MARK", "atomic_open", "atomic_write"]


@contextlib.contextmanager
def atomic_open(path):
    """A binary file to write ``path`` through: renamed over it only if the block succeeds."""
    path = Path(path)
    fd, tmp = _create_temporary(path)
    try:
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


# Temporaries are named ".NAME" + TEMPORARY_MARK + random + ".tmp": what a directory's
# clean-up may delete, and nothing a user would name so.
TEMPORARY_MARK = ".cvae-"


def _create_temporary(path):
    """A new file beside ``path`` for its atomic write: ``(descriptor, name)``. Created with
    mode 0666, which the operating system lowers by the process's umask as for any new file
    (reading the umask would mean setting it, for every thread of the process)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}{TEMPORARY_MARK}{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary file beside {path}.")
