"""The log directory of a training run: its files, their format version, and its lock.

============  =====================================================================
file          what it holds
============  =====================================================================
params.json   ``format_version``, the estimator's parameters and the run
              specification (:class:`cvae.spec.RunSpec`)
checkpoint.pt weights, best weights, optimizer, callbacks, step, random state
              (read with ``weights_only=True``); ``format_version`` too
split.npz     the rows held out for validation, and how many rows they came from
neighbors.npz the training rows' neighbour graph and the key of what it was built
              from, so that a continued run does not search again
history.csv   one row per validation, for people: nothing reads it back
.lock         held (``flock``) by the process fitting into the directory
============  =====================================================================

Files without a ``format_version`` were written by cvae 0.1.0 (format 1); they are
upgraded in memory when read, and written back in the current format at the next save.
"""

import contextlib
import csv
import hashlib
import io
import json
import logging
from numbers import Integral
from pathlib import Path

import numpy as np
import torch

from ..data.rows import Split
from ..data.sources import open_npz
from ..spec import FORMAT_VERSION, RunSpec, build_module
from .._atomic import TEMPORARY_MARK, atomic_write
from .io import load_checkpoint, save_checkpoint
from .state import check_trainer_state, checked_state

__all__ = ["LogDir", "LogDirLocked"]

logger = logging.getLogger(__name__)


class LogDirLocked(RuntimeError):
    """Another process is fitting into the log directory."""


class LogDir:
    """The files of one training run.

    Parameters
    ----------
    path : str or path-like
        Directory of the run; created on the first write.
    """

    PARAMS = "params.json"
    CHECKPOINT = "checkpoint.pt"
    HISTORY = "history.csv"
    SPLIT = "split.npz"
    NEIGHBORS = "neighbors.npz"
    LOCK = ".lock"
    RUN_FILES = (PARAMS, CHECKPOINT, HISTORY, SPLIT, NEIGHBORS, "normalization.npz")  # the last from format 1

    def __init__(self, path):
        self.path = Path(path).expanduser()

    def file(self, name):
        return self.path / name

    def has_run(self):
        """True if a checkpoint from an earlier fit is present."""
        return self.file(self.CHECKPOINT).is_file()

    @contextlib.contextmanager
    def locked(self):
        """Hold the directory's lock for the duration; another holder raises :class:`LogDirLocked`.

        The lock is an ``flock`` on ``.lock``, which the operating system releases when the
        process ends, however it ends; where ``flock`` does not exist (Windows), nothing
        is locked.
        """
        self._check_not_a_file()
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            with self._held():
                yield
        finally:
            # A fit that failed before writing anything leaves no directory it made behind.
            if created and [p.name for p in self.path.iterdir()] in ([], [self.LOCK]):
                with contextlib.suppress(OSError):
                    self.file(self.LOCK).unlink(missing_ok=True)
                    self.path.rmdir()

    @contextlib.contextmanager
    def _held(self):
        try:
            import fcntl
        except ImportError:
            yield
            return
        with open(self.file(self.LOCK), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LogDirLocked(
                    f"Another process is fitting into log directory {str(self.path)!r}; wait for it to end, "
                    "or choose another logdir."
                ) from None
            self._remove_stale_temporaries()
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _check_not_a_file(self):
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"logdir {str(self.path)!r} is a file, not a directory; choose a directory.")

    def _remove_stale_temporaries(self):
        # Temporaries of atomic writes left by a process that was killed (_atomic.TEMPORARY_MARK
        # names them, so a user's own hidden files stay): under the lock, no writer of this
        # directory is alive.
        for path in self.path.glob(f".*{TEMPORARY_MARK}*.tmp"):
            with contextlib.suppress(OSError):
                path.unlink()

    def check_continued_by(self, spec, state):
        """Refuse a fit continued from memory (run ``spec`` at trainer ``state``) unless this
        directory holds the same run at the same or an earlier step: it never writes over
        another run, nor over a newer state of this one."""
        saved_spec = self.read_params()[1]
        saved = self.read_checkpoint(saved_spec)
        where = f"Log directory {str(self.path)!r}"
        shared = min(len(saved["history"]), len(state["history"]))
        if saved_spec.to_dict() != spec.to_dict() or saved["history"][:shared] != state["history"][:shared]:
            raise FileExistsError(
                f"{where} holds another training run than the one this estimator continues; continuing here "
                "would replace it. Choose another logdir, or CompressionVAE.load() the run it holds."
            )
        if saved["step"] > state["step"]:
            raise FileExistsError(
                f"{where} holds this run at step {saved['step']}, further than this estimator's step "
                f"{state['step']}; continuing here would replace it. CompressionVAE.load() it to continue from there."
            )

    # ---------------------------------------------------------------- params.json

    def write_params(self, params, spec):
        """Write the estimator's parameters and the run specification; :meth:`read_params`
        gives the parameters back as the estimator takes them."""
        self.path.mkdir(parents=True, exist_ok=True)
        document = {"format_version": FORMAT_VERSION, "params": _json_params(params), "spec": spec.to_dict()}
        atomic_write(self.file(self.PARAMS), json.dumps(document, indent=2, sort_keys=True).encode())

    def read_params(self):
        """``(params, spec)``: the saved parameters (a dict) and :class:`RunSpec`.

        Raises
        ------
        FileNotFoundError
            If there is no ``params.json``.
        ValueError
            Naming the file, if it is not valid JSON or its contents are not a valid run.
        """
        self._check_not_a_file()
        path = self.file(self.PARAMS)
        if not path.is_file():
            raise FileNotFoundError(f"No parameter file in log directory: {path}")
        try:
            document = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ValueError(f"Cannot read {path}: it is not valid JSON ({exc}).") from exc
        try:
            if not isinstance(document, dict):
                raise ValueError("it holds no JSON object")
            if "format_version" not in document:
                document = _upgrade_params_from_1(document)
            elif document["format_version"] != FORMAT_VERSION:
                raise ValueError(
                    f"it has format_version {document['format_version']!r}, and this cvae reads "
                    f"formats 1 to {FORMAT_VERSION}; a newer cvae wrote it"
                )
            params = document.get("params")
            if not isinstance(params, dict):
                raise ValueError("it has no 'params' object")
            if isinstance(params.get("hidden_layer_sizes"), list):  # JSON has no tuples
                params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
            return params, RunSpec.from_dict(document.get("spec"))
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"Cannot read {path}: {exc}.") from exc

    # ---------------------------------------------------------------- checkpoint.pt

    def write_checkpoint(self, state):
        """Write the trainer state with a digest of its weights, and the history beside it."""
        self.path.mkdir(parents=True, exist_ok=True)
        state = dict(state, format_version=FORMAT_VERSION, digest=weights_digest(state))
        save_checkpoint(self.file(self.CHECKPOINT), state)
        self.write_history(state["history"])

    def read_checkpoint(self, spec):
        """The saved trainer state, upgraded to the current format for the model ``spec`` describes.

        Raises
        ------
        ValueError
            Naming the file, if its weights do not match their digest (changed or damaged
            bytes), or if a part of it is damaged (:func:`cvae.training.state.checked_state`).
        """
        path = self.file(self.CHECKPOINT)
        state = load_checkpoint(path)
        where = f"checkpoint {path}"
        check_trainer_state(state, where)  # before the upgrade and the digest read its parts
        if "format_version" not in state:
            state = _upgrade_checkpoint_from_1(state, spec)
        elif state.get("digest") != weights_digest(state):
            raise ValueError(f"Checkpoint {path} is damaged: its weights do not match the digest saved with them.")
        return checked_state(state, spec, where)

    # ---------------------------------------------------------------- history and split

    def write_history(self, history):
        if not history:
            return
        out = io.StringIO()
        # every row's columns, in order: a run continued from an older version logs more
        writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(key for row in history for key in row)), restval="")
        writer.writeheader()
        writer.writerows(history)
        atomic_write(self.file(self.HISTORY), out.getvalue().encode())

    def write_split(self, split):
        """Keep a :class:`cvae.data.rows.Split`."""
        out = io.BytesIO()
        np.savez(out, validation_rows=np.asarray(split.validation_rows, np.int64), n_samples=np.int64(split.n_samples))
        atomic_write(self.file(self.SPLIT), out.getvalue())

    def read_split(self):
        """The saved :class:`cvae.data.rows.Split`, or ``None`` if there is none."""
        path = self.file(self.SPLIT)
        if not path.is_file():
            return None
        try:
            with open_npz(path) as saved:
                rows, n_samples = np.asarray(saved["validation_rows"]), int(saved["n_samples"])
        except Exception as exc:  # a damaged archive raises BadZipFile, EOFError, IndexError...
            raise ValueError(f"Cannot read the saved train/validation split {path} ({type(exc).__name__}: {exc}).") \
                from exc
        valid = (rows.ndim == 1 and rows.dtype.kind in "iu" and 0 < len(rows) < n_samples
                 and rows.min() >= 0 and rows.max() < n_samples and len(np.unique(rows)) == len(rows))
        if not valid:
            raise ValueError(f"Cannot read the saved train/validation split {path}: its validation rows are not "
                             f"distinct row numbers below n_samples={n_samples} that leave rows for training.")
        return Split(rows, n_samples)

    def write_neighbor_graph(self, graph, key):
        """Keep ``graph`` (positions among the training rows) under ``key``, which says what
        it was built from."""
        out = io.BytesIO()
        np.savez(out, graph=np.asarray(graph, np.int64), key=np.str_(key))
        atomic_write(self.file(self.NEIGHBORS), out.getvalue())

    def read_neighbor_graph(self, key, n_rows):
        """The graph kept under ``key`` for ``n_rows`` training rows, or ``None`` when none is
        kept, or one built from other rows (which the next write replaces)."""
        path = self.file(self.NEIGHBORS)
        if not path.is_file():
            return None
        try:
            with open_npz(path) as saved:
                saved_key, graph = str(saved["key"]), np.asarray(saved["graph"])
        except Exception as exc:  # a damaged archive raises BadZipFile, EOFError, IndexError...
            raise ValueError(f"Cannot read the saved neighbour graph {path} ({type(exc).__name__}: {exc}). Delete "
                             "it to search again.") from exc
        if saved_key != key:
            return None
        if not (graph.ndim == 2 and graph.dtype.kind in "iu" and len(graph) == n_rows and graph.shape[1] > 0
                and graph.min() >= 0 and graph.max() < n_rows):
            raise ValueError(f"Cannot read the saved neighbour graph {path}: expected row numbers below {n_rows} "
                             f"in an array of {n_rows} rows, found shape {graph.shape}. Delete it to search again.")
        return graph.astype(np.int64, copy=False)

    def clear(self):
        """Delete the files of a run written here (and nothing else in the directory)."""
        if not self.path.is_dir():
            return
        for path in self.path.iterdir():
            if path.name in self.RUN_FILES or path.name.startswith("events.out.tfevents."):
                path.unlink()


def _json_params(params):
    """The estimator's parameters as JSON can hold them (paths and devices as strings)."""
    params = dict(params)
    params["logdir"] = None if params["logdir"] is None else str(params["logdir"])
    params["device"] = str(params["device"])
    if not (params["random_state"] is None or isinstance(params["random_state"], Integral)):
        params["random_state"] = None
    if params["hidden_layer_sizes"] is not None:
        params["hidden_layer_sizes"] = [int(s) for s in params["hidden_layer_sizes"]]
    return json.loads(json.dumps(params))


def weights_digest(state):
    """SHA-256 of the weights and best weights of a trainer state, in key order."""
    digest = hashlib.sha256()
    for part in ("model", "best_model"):
        for name in sorted(state[part]):
            tensor = state[part][name]
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


# -------------------------------------------------------------------- format 1 -> 2


def _upgrade_params_from_1(document):
    """params.json of format 1: ``{"params": ..., "meta": {model, loc, scale, seed, ...}}``."""
    meta, params = document["meta"], document["params"]
    spec = {
        "model": meta["model"],
        "normalize": params["normalize"],
        "loc": meta["loc"],
        "scale": meta["scale"],
        "seed": meta["seed"],
        "feature_names": meta["feature_names"],
    }
    return {"format_version": FORMAT_VERSION, "params": params, "spec": spec}


def _upgrade_checkpoint_from_1(state, spec):
    """A checkpoint of format 1.

    The scheduler and the rollback count stood at the top level; the batch order was a
    stored permutation in the oldest files (the run then restarts at an epoch's start);
    the oldest IAF kept one MADE per step, whose weights are stacked here, and whose Adam
    moments, held for other tensors, restart at the saved learning rate.
    """
    state = dict(state)
    state["callbacks"] = {"scheduler": state.pop("scheduler"), "rollbacks": {"count": state.pop("rollbacks")}}
    if "epoch" not in state["batches"]:
        state["batches"] = {"epoch": 0, "pos": 0}
    n_flows = spec.model.n_flows
    if n_flows and "flow.steps.0.made.layers.0.weight" in state["model"]:
        for key in ("model", "best_model"):
            state[key] = _stack_per_step_weights(dict(state[key]), "flow.", n_flows)
        n_params = len(list(build_module(spec).parameters()))
        optimizer = dict(state["optimizer"], state={})
        optimizer["param_groups"] = [dict(optimizer["param_groups"][0], params=list(range(n_params)))]
        state["optimizer"] = optimizer
        logger.warning("The saved optimizer state does not fit this model's parameters; Adam restarts its "
                       "moment estimates at the saved learning rate %.3g.", optimizer["param_groups"][0]["lr"])
    return state


def _stack_per_step_weights(state_dict, prefix, n_steps):
    """Keys ``steps.{k}.made.layers.{i}.{weight,bias,mask}``, ``steps.{k}.made.context.weight``
    and ``steps.{k}.made.order`` become the stacked weights of all steps; masks and orders
    are rebuilt from the architecture, so they are dropped."""
    old = f"{prefix}steps.{{k}}.made.{{name}}"

    def pop_all(name):
        return [state_dict.pop(old.format(k=k, name=name)) for k in range(n_steps)]

    n_layers = sum(1 for key in state_dict if key.startswith(old.format(k=0, name="layers.")) and key.endswith(".mask"))
    for i in range(n_layers):
        state_dict[f"{prefix}layers.{i}.weight"] = torch.stack(pop_all(f"layers.{i}.weight"))
        biases = torch.stack(pop_all(f"layers.{i}.bias"))
        state_dict[f"{prefix}first_bias" if i == 0 else f"{prefix}layers.{i}.bias"] = biases
        pop_all(f"layers.{i}.mask")
    if old.format(k=0, name="context.weight") in state_dict:
        state_dict[f"{prefix}context.weight"] = torch.cat(pop_all("context.weight"))
    pop_all("order")
    return state_dict
