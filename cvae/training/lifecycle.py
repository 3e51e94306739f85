"""A fit around its training run, and a fitted run read back: the process group, the log
directory's lock, which run a fit continues, what its "auto" parameters resolve to, and the
parameters saved in a log directory decoded for :meth:`cvae.CompressionVAE.load`.
``partial_fit``'s path is :mod:`cvae.training.update`, on the same opening."""

import contextlib
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .._validation import draw_seed, resolve_device
from ..data.preparation import FitData, prepare
from ..spec import RunSpec, check_warm_start, new_spec
from .distributed import Distributed
from .logdir import LogDir
from .plan import TrainingPlan
from .run import neighbor_weight_for, reconstruction_fraction_for, run_training, step_budget
from .state import checked_state

__all__ = ["FitResult", "OpenedRun", "fit_run", "opened_run", "previous_run", "read_run", "resolved_auto"]


@dataclass
class FitResult:
    """What a fit trained: the run's specification, the trainer's final state, where it
    ran, its prepared data and its plan (how it trained, "auto" resolved)."""

    spec: RunSpec
    state: dict
    device: torch.device
    data: FitData
    plan: TrainingPlan
    distributed: Distributed


@dataclass
class OpenedRun:
    """A fit's place in the world, once its log directory is locked: the process group
    and device, the log directory, and the run it continues (its spec, trainer state,
    saved split and classes; ``None`` each for a new run) with the seed it trains with."""

    distributed: Distributed
    device: torch.device
    logdir: LogDir
    spec: RunSpec
    resume: dict
    saved_split: object
    seed: int
    classes: object


@contextlib.contextmanager
def opened_run(params, fitted=None, warm_start=None):
    """Join the process group of a ``torchrun`` launch, lock ``params["logdir"]`` (in the
    first process) for the duration, and find the run to continue (:func:`previous_run`;
    ``warm_start`` overrides the parameter): yields an :class:`OpenedRun`. ``fitted`` is
    the estimator's own ``(spec, checkpoint)`` when it is fitted."""
    distributed = Distributed.from_environment()
    device = distributed.device(resolve_device(params["device"]))
    distributed.join(device)
    logdir = LogDir(params["logdir"]) if params["logdir"] is not None else None
    warm_start = params["warm_start"] if warm_start is None else warm_start
    with logdir.locked() if logdir is not None and distributed.is_main else contextlib.nullcontext():
        spec, resume, saved_split = previous_run(dict(params, warm_start=warm_start), logdir, fitted)
        seed = spec.seed if spec is not None else distributed.broadcast(draw_seed(params["random_state"]))
        saved_classes = None if resume is None else resume.get("classes")
        classes = None if saved_classes is None else np.asarray(saved_classes)  # checked when read
        yield OpenedRun(distributed, device, logdir, spec, resume, saved_split, seed, classes)


def resolved_auto(params, run, labels, data):
    """``{"neighbor_weight": w, "reconstruction_fraction": f}``, ``"auto"`` resolved for
    ``run`` (an :class:`OpenedRun`) on the prepared ``data``, and the warning that labels
    have no effect without the neighbour term."""
    continued = None if run.resume is None else run.resume.get("resolved", {}).get("neighbor_weight")
    resolved = {"neighbor_weight": neighbor_weight_for(params, continued)}
    resolved["reconstruction_fraction"] = reconstruction_fraction_for(
        params, resolved["neighbor_weight"], data.covariates is not None)
    if labels is not None and resolved["neighbor_weight"] == 0 and params["target_weight"] > 0:
        warnings.warn("y is not used: labels shape the embedding through the neighbour term, which is off "
                      "(neighbor_weight=0).", UserWarning, stacklevel=5)
    return resolved


def fit_run(params, rows, sample_weight=None, fitted=None):
    """Train the run that a fit with the estimator parameters ``params`` asks for.

    Opens the run (:func:`opened_run`), reads the rows, prepares the data, resolves
    ``"auto"`` (the step budget: :func:`cvae.training.run.step_budget`), and trains.
    ``rows()``, called once the lock is held, returns ``(training source, validation
    source or None, labels or None, feature names or None, covariates or None)``. ``fitted`` is the estimator's
    own ``(spec, checkpoint)`` when it is fitted. :mod:`cvae.training.update` is
    ``partial_fit``'s path.
    """
    with opened_run(params, fitted) as run:
        source, valid, labels, feature_names, covariates = rows()
        data = prepare(source, valid, params, run.seed, run.saved_split, run.spec, run.logdir, sample_weight,
                       labels, run.classes, feature_names, covariates)
        resolved = resolved_auto(params, run, labels, data)
        resolved["max_steps"] = step_budget({**params, **resolved}, len(data.train))
        check_unfinished(run.resume, resolved["max_steps"], params["logdir"])
        plan = TrainingPlan.from_params(params, **resolved)
        spec = run.spec if run.spec is not None else new_spec({**params, **resolved}, data, run.seed, feature_names)
        state = run_training(params, plan, spec, data, run.device, run.distributed, run.logdir, run.resume)
    return FitResult(spec, state, run.device, data, plan, run.distributed)


# Why a run ended, for a run that ended by itself.
_FINISHED = ("max_steps", "converged", "no_improvement")


def check_unfinished(resume, max_steps, logdir):
    """Refuse to continue a finished run (``resume``, a trainer state, or ``None`` for a new
    run) that has no steps left in ``max_steps``: it would train nothing. With a larger
    ``max_steps`` the run goes on, its learning rate following the schedule of the new
    budget (the cosine's rate is a function of the step and the budget)."""
    if resume is None or resume.get("stop_reason") not in _FINISHED or resume["step"] < max_steps:
        return
    where = "" if logdir is None else f" in {str(logdir)!r}"
    raise ValueError(
        f"The run{where} finished at step {resume['step']} ({resume['stop_reason']}), and max_steps={max_steps} "
        "leaves it nothing to train. To train it further, continue it with a larger max_steps; to use it as "
        "it is, CompressionVAE.load() it."
    )


def previous_run(params, logdir, fitted=None):
    """``(spec, trainer state, saved split)`` of the run a fit continues, or ``None`` for each.

    ``fitted`` is the estimator's own ``(spec, state)`` when it is fitted and
    ``params["warm_start"]`` is set: it is continued, and ``logdir`` (a :class:`LogDir` or
    ``None``) must not hold another run, nor a newer state of this one. Otherwise a run in
    ``logdir`` is continued with ``warm_start``, and refused without it.
    """
    if params["warm_start"] and fitted is not None:
        spec, state = fitted
        state = checked_state(state, spec, "the fitted estimator's checkpoint")
        if logdir is not None and logdir.has_run():
            logdir.check_continued_by(spec, state)
    elif logdir is None or not logdir.has_run():
        return None, None, None
    elif not params["warm_start"]:
        raise FileExistsError(
            f"Log directory {str(logdir.path)!r} already holds a training run. Pass warm_start=True to "
            "continue it, use CompressionVAE.load() to use it as is, or choose an empty logdir to "
            "start afresh."
        )
    else:
        spec = logdir.read_params()[1]
        state = logdir.read_checkpoint(spec)
    check_warm_start(params, spec)
    return spec, state, (logdir.read_split() if logdir is not None else None)


def read_run(logdir, param_names, device=None):
    """``(run, params, spec, state)`` of the fitted run saved in ``logdir``: its
    :class:`LogDir`, the estimator parameters it was fitted with (``logdir`` and, when
    given, ``device`` replaced), which must all be among ``param_names``, its specification
    and its trainer state."""
    run = LogDir(logdir)
    params, spec = run.read_params()
    state = run.read_checkpoint(spec)
    params = dict(params, logdir=str(logdir))
    if device is not None:
        params["device"] = device
    unknown = sorted(params.keys() - set(param_names))
    if unknown:
        raise ValueError(f"Cannot read {run.file(run.PARAMS)}: unknown parameters {', '.join(unknown)}.")
    return run, params, spec, state
