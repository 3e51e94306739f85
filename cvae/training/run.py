"""One training run: model, optimizer, callbacks and trainer built from the estimator's
parameters and a run specification; the log directory written; the stop reported."""

import contextlib
from dataclasses import replace
import math
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from ..data.batches import local_batch_size, training_batches, validation_chunks
from ..data.graph import graph_rows, training_graph
from ..data.rows import take_rows
from ..data.sources import ArraySource
from ..nn.vae import LossSettings
from ..spec import build_module
from .callbacks import (
    Checkpoint,
    ClassifierLoss,
    CosineDecay,
    EarlyStopping,
    LearningRatePlateau,
    NonFiniteRollback,
    Progress,
    TensorBoardScalars,
)
from .stored import fit_keeps
from .tensorboard import TensorBoardLog
from .trainer import Trainer, TrainerConfig, make_adam

__all__ = ["neighbor_weight_for", "reconstruction_fraction_for", "run_training", "step_budget", "warn_on_stop"]

# learning_rate="cosine" warms up over this fraction (1/20) of max_steps.
COSINE_WARMUP_DIVISOR = 20
# neighbor_weight="auto": the weight of the neighbour term for training rows in memory.
AUTO_NEIGHBOR_WEIGHT = 0.4
# max_steps="auto": passes over the training rows, 40 with the neighbour term and 120
# without, times sqrt(AUTO_PASS_ROWS / rows) below AUTO_PASS_ROWS rows, since a pass over
# few rows is few steps (as umap-learn runs more epochs on small data). Above
# AUTO_PASS_ROWS rows, the neighbour term's passes fall as (AUTO_PASS_ROWS / rows) **
# AUTO_NEIGHBOR_LARGE_EXPONENT: a pass over more rows holds more neighbour pairs. At most
# AUTO_MAX_STEPS steps. Measured in benchmarks/README.md, "Time to quality".
AUTO_NEIGHBOR_PASSES = 40
AUTO_PASSES = 120
AUTO_PASS_ROWS = 10_000
AUTO_NEIGHBOR_LARGE_EXPONENT = 0.15
AUTO_MAX_STEPS = 50000
# reconstruction_fraction="auto": the share of each batch reconstructed in a fit with
# covariates and the neighbour term, where the batch-balanced graph carries the integration
# and a quarter keeps every integration figure at about 0.65x the time (benchmarks/README.md,
# "Covariates"). With a classifier (classifier_weight > 0) the whole batch is reconstructed:
# the classifier reads the encoder's features, and with a quarter it carried labels to a new
# batch worse. Without covariates every batch is reconstructed whole, the value every other
# figure was measured at.
AUTO_COVARIATE_RECONSTRUCTION = 0.25


def neighbor_weight_for(params, continued=None):
    """``neighbor_weight`` as a number: ``"auto"`` is the continued run's weight
    (``continued``, a number or ``None`` for a new run), else ``AUTO_NEIGHBOR_WEIGHT``."""
    weight = params["neighbor_weight"]
    if weight == "auto":
        weight = continued if continued is not None else AUTO_NEIGHBOR_WEIGHT
    return float(weight)


def reconstruction_fraction_for(params, neighbor_weight, covariates):
    """``reconstruction_fraction`` as a number: ``"auto"`` is ``AUTO_COVARIATE_RECONSTRUCTION``
    for a fit with ``covariates`` (true when the rows have them) and the neighbour term
    (``neighbor_weight`` > 0) but no classifier, else 1."""
    fraction = params["reconstruction_fraction"]
    if fraction == "auto":
        quarter = covariates and neighbor_weight > 0 and params["classifier_weight"] == 0
        fraction = AUTO_COVARIATE_RECONSTRUCTION if quarter else 1.0
    return float(fraction)


def step_budget(params, n_rows):
    """``max_steps`` as a number of steps: ``"auto"`` resolved for ``n_rows`` training rows
    (``params["neighbor_weight"]`` already a number)."""
    if params["max_steps"] != "auto":
        return int(params["max_steps"])
    if params["learning_rate"] == "adaptive":
        return AUTO_MAX_STEPS
    ratio = AUTO_PASS_ROWS / max(n_rows, 1)
    if params["neighbor_weight"] > 0:
        passes = AUTO_NEIGHBOR_PASSES * ratio ** (0.5 if ratio > 1 else AUTO_NEIGHBOR_LARGE_EXPONENT)
    else:
        passes = AUTO_PASSES * max(1.0, ratio) ** 0.5
    return int(min(AUTO_MAX_STEPS, max(1, math.ceil(passes * n_rows / params["batch_size"]))))


def run_training(params, plan, spec, data, device, distributed, logdir=None, resume=None, keep=fit_keeps,
                 callbacks=(), carried=None, stored_labelled=None):
    """Train the model ``spec`` describes on ``data``; return the final trainer state.

    Parameters
    ----------
    params : dict
        The estimator's parameters (``get_params()``), saved in ``logdir`` as given.
    plan : cvae.training.plan.TrainingPlan
        How the run trains, every "auto" resolved: what the run reads.
    spec : cvae.spec.RunSpec
    data : cvae.data.preparation.FitData
        With the neighbour term, the run trains and validates on the rows its budget
        visits (:func:`cvae.data.graph.graph_rows`).
    device : torch.device
    distributed : cvae.training.distributed.Distributed
    logdir : cvae.training.LogDir, default=None
        Written by the main process: parameters and spec first, checkpoints during the
        run, the last checkpoint and the history at its end.
    resume : dict, default=None
        A trainer state to continue from.
    keep : callable, default=:func:`cvae.training.stored.fit_keeps`
        ``keep(plan, spec, state, data, device)``: what the run stores beside the
        trainer's state at its end (landmarks, its sample of rows, the placement's
        reference), a dict.
    callbacks : sequence of Callback, default=()
        Added to the trainer's own (an update's :class:`cvae.training.callbacks.Landmarks`).
    carried : dict, default=None
        What every checkpoint carries besides the trainer's state and the run's classes
        (an update: what the run it updates stored, until the update's end replaces it).
    stored_labelled : tuple of ndarray, default=None
        ``(rows, codes)``: labelled rows the model's classifier trains on beside the run's
        own (an update: those the run stored, their covariates after them).

    Returns
    -------
    state : dict
        :meth:`Trainer.state_dict` at the end of the run, with what ``keep`` stores, the
        resolved values, the data's range and the classes.
    """
    # NumPy scalars (np.arange grids) as Python numbers, for params.json and the checkpoint alike
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
    writer = logdir if logdir is not None and distributed.is_main else None
    if writer is not None:
        writer.write_params(params, spec)
        if data.held_out is not None:
            writer.write_split(data.held_out)
    if plan.neighbor_weight > 0:  # the graphs' cost follows the budget (GRAPH_MIN_ROWS)
        data = replace(data, train=graph_rows(data.train, plan.max_steps * plan.batch_size, spec.seed),
                       valid=graph_rows(data.valid, 0, spec.seed))
    carried = {**({} if data.classes is None else {"classes": data.classes.tolist()}), **(carried or {})}
    tensorboard = TensorBoardLog(writer.path) if plan.tensorboard and writer is not None else None
    with tensorboard if tensorboard is not None else contextlib.nullcontext():
        trainer = _build_trainer(plan, spec, data, device, distributed, writer, tensorboard, carried,
                                 stored_labelled)
        trainer.callbacks.extend(callbacks)
        if resume is not None:
            trainer.load_state_dict(resume)
        trainer.run()
        state = trainer.state_dict()
    state["resolved"] = dict(plan.resolved_values(), precision=trainer.precision, threads=trainer.threads)
    state["data_range"] = [data.summary.low, data.summary.high]
    if data.classes is not None:
        state["classes"] = data.classes.tolist()
    state.update(keep(plan, spec, state, data, device))
    if writer is not None:
        writer.write_checkpoint(state)
    return state


def _build_trainer(plan, spec, data, device, distributed, writer, tensorboard, carried=None, stored_labelled=None):
    model = build_module(spec).to(device)
    optimizer = make_adam(model.parameters(), plan.learning_rate_init)
    callbacks = [NonFiniteRollback()]
    if tensorboard is not None:
        callbacks.insert(0, TensorBoardScalars(tensorboard))
    if plan.learning_rate == "adaptive":
        callbacks.append(LearningRatePlateau(optimizer, plan.learning_rate_factor, plan.patience,
                                             plan.tol, plan.learning_rate_min))
    elif plan.learning_rate == "cosine":
        max_steps = plan.max_steps
        warmup = max_steps // COSINE_WARMUP_DIVISOR
        callbacks.append(CosineDecay(optimizer, plan.learning_rate_init, max_steps, warmup,
                                     plan.learning_rate_min))
    if plan.n_iter_no_change is not None:
        callbacks.append(EarlyStopping(plan.n_iter_no_change, plan.tol))
    if plan.verbose and distributed.is_main:
        callbacks.append(Progress())
    if writer is not None:
        callbacks.append(Checkpoint(writer.write_checkpoint, plan.checkpoint_interval, carried))
    loss = LossSettings(
        beta=plan.beta,
        free_bits=float(plan.free_bits),
        # The reconstruction term grows with the number of features: so does the neighbour term.
        neighbor_weight=float(plan.neighbor_weight) * spec.n_features,
        reconstruction_fraction=float(plan.reconstruction_fraction),
        neighbor_objective=plan.neighbor_objective,
        gather=distributed.gather_rows if distributed.enabled else None,
    )
    config = TrainerConfig(
        max_steps=plan.max_steps,
        validation_interval=plan.validation_interval,
        kl_warmup_steps=plan.kl_warmup_steps,
        precision=plan.precision,
        compile=plan.compile,
        n_jobs=plan.n_jobs,
    )

    normalize = model.scale_rows
    with_neighbors = plan.neighbor_weight > 0
    train, valid, graph = data.train, data.valid, None
    if with_neighbors:
        graph = training_graph(train, normalize, plan.n_neighbors, device, distributed, graphs=writer)
    batches = training_batches(train, plan.batch_size, spec.seed, device, distributed, graph,
                               plan.neighbor_samples, plan.target_weight)
    # partial_fit validates on its training rows: their nearest neighbours are known
    same_rows = valid.source is train.source and np.array_equal(valid.indices, train.indices)
    nearest = graph[:, 0] if graph is not None and same_rows else None
    chunks = validation_chunks(valid, plan.eval_batch_size, device, distributed, normalize, with_neighbors,
                               nearest)
    callbacks += classifier_losses(plan, spec, train.source, train.indices, train.labels, stored_labelled)
    local = local_batch_size(plan.batch_size, distributed.rank, distributed.world_size)
    batch_weight = local * distributed.world_size / plan.batch_size
    return Trainer(model, optimizer, batches, chunks, loss, config, callbacks, distributed, batch_weight, spec.seed)


def classifier_losses(plan, spec, source, indices, codes, stored=None):
    """``[ClassifierLoss]`` over the rows ``indices`` of ``source`` whose class ``codes`` are
    known (>= 0; ``codes`` None: no labels) and the ``stored`` labelled rows ``(rows,
    codes)``, one term over both, weighted by ``classifier_weight`` scaled like the
    reconstruction term; ``[]`` for a model without a classifier, a weight of 0 or no
    labelled row (an update without labels or stored labelled rows leaves the classifier
    as it is)."""
    if not spec.model.n_classes or plan.classifier_weight == 0:
        return []
    if codes is None:
        indices = codes = np.array([], dtype=np.int64)
    indices, codes = indices[codes >= 0], codes[codes >= 0]
    if stored is not None:  # one draw over every labelled row: the stored ones, then the run's
        rows, stored_codes = stored[0][stored[1] >= 0], stored[1][stored[1] >= 0]
        if len(indices):
            rows = np.vstack([rows, take_rows(source, indices)])
        source, indices, codes = ArraySource(rows), np.arange(len(rows)), np.concatenate([stored_codes, codes])
    if len(indices) == 0:
        return []
    return [ClassifierLoss(source, indices, codes, plan.classifier_weight * spec.n_features, spec.seed)]


def warn_on_stop(plan, state):
    """Warn about a fit that ended otherwise than by converging (``plan``: its
    :class:`cvae.training.plan.TrainingPlan`)."""
    reason, step = state["stop_reason"], state["step"]
    if reason == "interrupted":
        warnings.warn(
            f"Training interrupted at step {step}; the model holds the best weights so far"
            + (f" and a checkpoint was saved in {plan.logdir!r}." if plan.logdir is not None else "."),
            UserWarning,
            stacklevel=3,
        )
    elif state["best_loss"] == float("inf"):
        warnings.warn(
            f"No validation loss was finite in {step} steps: the model holds its initial weights. Lower "
            "learning_rate_init, or check that the data is finite and of moderate scale.",
            ConvergenceWarning,
            stacklevel=3,
        )
    elif reason == "diverged":
        warnings.warn(
            f"Training diverged (non-finite loss) at step {step} even after lowering the "
            "learning rate; the model holds the last weights with a finite validation loss. Try a "
            "lower learning_rate_init, or normalize the data.",
            RuntimeWarning,
            stacklevel=3,
        )
    elif reason == "max_steps" and plan.learning_rate == "adaptive":
        warnings.warn(
            f"Reached max_steps={plan.max_steps} before the learning rate fell below "
            f"learning_rate_min={plan.learning_rate_min}; the model may improve with more steps.",
            ConvergenceWarning,
            stacklevel=3,
        )
