"""One training run: model, optimizer, callbacks and trainer built from the estimator's
parameters and a run specification; the log directory written; the stop reported."""

import contextlib
from dataclasses import replace
import math
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from ..data.batches import local_batch_size
from .._random import row_keys
from ..data.rows import take_rows
from ..nn.vae import LossSettings
from ..neighbors.placement import NeighborReference
from ..data.preparation import graph_rows, training_batches, training_graph, validation_chunks
from ..spec import build_module
from .callbacks import (
    Checkpoint,
    CosineDecay,
    EarlyStopping,
    Landmarks,
    LearningRatePlateau,
    NonFiniteRollback,
    Progress,
    TensorBoardScalars,
)
from .tensorboard import TensorBoardLog
from .trainer import Trainer, TrainerConfig, make_adam

__all__ = ["checked_landmarks", "neighbor_weight_for", "replay_source", "run_training", "step_budget", "warn_on_stop"]

# learning_rate="cosine" warms up over this fraction (1/20) of max_steps.
COSINE_WARMUP_DIVISOR = 20
# Training rows a fit stores, with their embedding, for partial_fit to keep in place, and
# the most bytes they take as float32 (wide rows: fewer of them).
LANDMARKS = 1024
LANDMARK_BYTES = 2**24
# Rows partial_fit keeps, a uniform sample of every row it has trained on, to place unseen
# rows by them (placement), and the most bytes they take as float32.
RESERVOIR_ROWS = 20_000
RESERVOIR_BYTES = 2**27
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


def neighbor_weight_for(params, continued=None):
    """``neighbor_weight`` as a number: ``"auto"`` is the continued run's weight
    (``continued``, a number or ``None`` for a new run), else ``AUTO_NEIGHBOR_WEIGHT``."""
    weight = params["neighbor_weight"]
    if weight == "auto":
        weight = continued if continued is not None else AUTO_NEIGHBOR_WEIGHT
    return float(weight)


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


def run_training(params, resolved, spec, data, device, distributed, logdir=None, resume=None, partial=False):
    """Train the model ``spec`` describes on ``data``; return the final trainer state.

    Parameters
    ----------
    params : dict
        The estimator's parameters (``get_params()``), as saved in ``logdir``.
    resolved : dict
        Its ``"auto"`` values resolved for this fit (``max_steps``, ``neighbor_weight``),
        which training uses.
    spec : cvae.spec.RunSpec
    data : cvae.data.preparation.FitData
    device : torch.device
    distributed : cvae.training.distributed.Distributed
    logdir : cvae.training.LogDir, default=None
        Written by the main process: parameters and spec first, checkpoints during the
        run, the last checkpoint and the history at its end.
    resume : dict, default=None
        A trainer state to continue from.
    partial : bool, default=False
        An update on new rows (``partial_fit``) rather than a run continued exactly: the
        update starts from ``resume``'s best weights, with its optimizer's moments but at
        the rate ``learning_rate_init``, on fresh batches; its weights at the end are kept;
        and with ``landmark_weight`` the landmarks stored by the run hold their place
        (:class:`cvae.training.callbacks.Landmarks`). Its rows join ``resume``'s sample
        of rows (``reservoir``), by which ``placement`` places unseen rows; a fit's
        sample holds its own training rows alone.

    Returns
    -------
    state : dict
        :meth:`Trainer.state_dict` at the end of the run.
    """
    # NumPy scalars (np.arange grids) as Python numbers, for params.json and the checkpoint alike
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
    writer = logdir if logdir is not None and distributed.is_main else None
    if writer is not None:
        writer.write_params(params, spec)
        if data.held_out is not None:
            writer.write_split(data.held_out)
    params = {**params, **resolved}
    if params["neighbor_weight"] > 0:  # the graphs' cost follows the budget (GRAPH_MIN_ROWS)
        data = replace(data, train=graph_rows(data.train, params["max_steps"] * params["batch_size"], spec.seed),
                       valid=graph_rows(data.valid, 0, spec.seed))
    landmarks = None if resume is None else checked_landmarks(resume.get("landmarks"), spec)
    reservoir = None if resume is None or not partial else _checked_reservoir(resume.get("reservoir"), spec)
    if partial and resume is not None:
        resume = _update_from(resume, params["learning_rate_init"])
    tensorboard = TensorBoardLog(writer.path) if params["tensorboard"] and writer is not None else None
    with tensorboard if tensorboard is not None else contextlib.nullcontext():
        trainer = _build_trainer(params, spec, data, device, distributed, writer, tensorboard,
                                 _carried(resume, data, partial, params["store_rows"]))
        if partial and landmarks is not None and params["landmark_weight"] > 0 and params["store_rows"]:
            trainer.callbacks.append(Landmarks(landmarks["rows"], landmarks["embedding"], params["landmark_weight"],
                                               spec.seed))
        if resume is not None:
            trainer.load_state_dict(resume)
        trainer.run()
        state = trainer.state_dict()
    state["resolved"] = dict(resolved, precision=trainer.precision, threads=trainer.threads)
    state["data_range"] = [data.summary.low, data.summary.high]
    if data.classes is not None:
        state["classes"] = data.classes.tolist()
    if params["store_rows"]:
        # a fit stores landmarks; partial_fit keeps the fit's (or none, before any fit)
        state["landmarks"] = landmarks if partial else _landmarks(spec, state, data, device, params["eval_batch_size"])
        # every run keeps its sample of rows, which partial_fit replays (and places unseen rows by)
        state["reservoir"] = _reservoir(reservoir, data.train.source, data.train.indices, spec.seed,
                                        params["eval_batch_size"])
    if keeps_reference(params, data.train.source) and not partial:
        state["reference"] = _neighbor_reference(spec, state, data, device).state_dict()
    elif keeps_reference(params, data.train.source):
        state["reference"] = _reservoir_reference(spec, state, state["reservoir"]["rows"], device).state_dict()
    if writer is not None:
        writer.write_checkpoint(state)
    return state


def _update_from(state, learning_rate):
    """``state`` as the start of an update on new rows: best weights, the learning rate
    reset, no best loss yet (the update's last validation keeps its weights), no batches."""
    optimizer = dict(state["optimizer"])
    optimizer["param_groups"] = [dict(group, lr=learning_rate) for group in optimizer["param_groups"]]
    return dict(state, model=state["best_model"], optimizer=optimizer, best_loss=float("inf"), batches=None)


def checked_landmarks(landmarks, spec):
    """The landmarks of a saved state (as float32 tensors), or ``None``; ``ValueError`` when
    they are damaged."""
    if landmarks is None:
        return None
    rows, embedding = (landmarks.get(k) if isinstance(landmarks, dict) else None for k in ("rows", "embedding"))
    valid = (isinstance(rows, torch.Tensor) and isinstance(embedding, torch.Tensor) and rows.ndim == 2
             and rows.shape[1] == spec.n_features and embedding.shape == (len(rows), spec.model.n_latent)
             and len(rows) > 0 and bool(torch.isfinite(rows).all()) and bool(torch.isfinite(embedding).all()))
    if not valid:
        raise ValueError("the checkpoint's landmarks (the stored rows partial_fit keeps in place) are damaged: "
                         f"expected finite arrays of shape (n, {spec.n_features}) and (n, {spec.model.n_latent}).")
    return {"rows": rows.float(), "embedding": embedding.float()}


def _landmarks(spec, state, data, device, chunk_rows):
    """Up to ``LANDMARKS`` training rows (fewer for wide rows: ``LANDMARK_BYTES`` in all),
    drawn with the run's seed, and their embedding by the best weights: what
    ``partial_fit`` keeps in place. Read and embedded ``chunk_rows`` rows at a time."""
    model = build_module(spec, state["best_model"]).to(device).eval()
    indices = data.train.indices
    n = min(LANDMARKS, max(1, LANDMARK_BYTES // (4 * spec.n_features)))
    chosen = indices[np.sort(np.random.default_rng(spec.seed).permutation(len(indices))[:n])]
    rows, embedding = [], []
    for part in range(0, len(chosen), chunk_rows):
        block = torch.from_numpy(np.ascontiguousarray(take_rows(data.train.source, chosen[part:part + chunk_rows])))
        with torch.no_grad():
            embedding.append(model.embed(block.to(device)).float().cpu())
        rows.append(block)
    return {"rows": torch.cat(rows), "embedding": torch.cat(embedding)}


def _reservoir(previous, source, indices, seed, chunk_rows):
    """``previous`` (or nothing) and rows ``indices`` of ``source``, sampled down to
    ``RESERVOIR_ROWS`` distinct rows (fewer for wide rows): each row's key comes from its
    content (:func:`cvae._random.row_keys`), and the rows of smallest keys stay, a uniform
    sample of the distinct rows seen, whatever was offered twice (rows passed again, rows
    replayed). Read ``chunk_rows`` rows at a time (fewer for wide rows); kept in the order
    they came."""
    cap = min(RESERVOIR_ROWS, max(1, RESERVOIR_BYTES // (4 * source.n_features)))
    chunk_rows = min(chunk_rows, cap)  # wide rows (sparse ones densified): at most the sample's bytes at once
    rows = np.empty((0, source.n_features), np.float32) if previous is None else previous["rows"].numpy()
    keys = np.empty(0) if previous is None else previous["keys"].numpy()
    for part in range(0, len(indices), chunk_rows):
        block = take_rows(source, indices[part:part + chunk_rows])
        rows, keys = np.concatenate([rows, block]), np.concatenate([keys, row_keys(block, seed)])
        _, first = np.unique(keys, return_index=True)  # sorted by key: the smallest first
        keep = np.sort(first[:cap])
        rows, keys = rows[keep], keys[keep]
    return {"rows": torch.from_numpy(rows), "keys": torch.from_numpy(keys)}


def replay_source(state, spec):
    """The stored rows that :meth:`partial_fit` replays from a saved ``state``: its
    reservoir, or for a state saved before runs kept one, its landmarks' rows (``None``
    when it has neither); checked."""
    reservoir = _checked_reservoir(state.get("reservoir"), spec)
    if reservoir is not None:
        return reservoir["rows"]
    landmarks = checked_landmarks(state.get("landmarks"), spec)
    return None if landmarks is None else landmarks["rows"]


def _checked_reservoir(reservoir, spec):
    """The reservoir of a saved state, or ``None``; ``ValueError`` when it is damaged."""
    if reservoir is None:
        return None
    rows, keys = (reservoir.get(k) if isinstance(reservoir, dict) else None for k in ("rows", "keys"))
    valid = (isinstance(rows, torch.Tensor) and isinstance(keys, torch.Tensor) and rows.ndim == 2
             and rows.shape[1] == spec.n_features and keys.shape == (len(rows),) and len(rows) > 0
             and bool(torch.isfinite(rows).all()))
    if not valid:
        raise ValueError("the checkpoint's reservoir (the rows partial_fit replays and places unseen rows by) is "
                         f"damaged: expected finite arrays of shape (n, {spec.n_features}) and (n,).")
    return {"rows": rows.float(), "keys": keys.double()}


def _reservoir_reference(spec, state, rows, device):
    """The reservoir's rows and their embedding by the last weights, for placement."""
    return _reference(spec, state, lambda chosen: rows[chosen].to(device), len(rows), device)


def keeps_reference(params, source):
    """Whether a fit keeps its training rows (of ``source``) to place unseen rows
    (``placement``): ``"auto"`` keeps rows held in memory, not rows streamed from files,
    and none with ``store_rows=False``."""
    if params["placement"] == "auto":
        return params["neighbor_weight"] > 0 and source.in_memory and params["store_rows"]
    return params["placement"] == "neighbors"


def _neighbor_reference(spec, state, data, device):
    """The training rows (with the held-out validation rows of ``X``) and their embedding
    by the best weights, for :meth:`cvae.neighbors.placement.NeighborReference.place`."""
    source = data.train.source
    indices = data.train.indices if data.held_out is None else np.union1d(data.train.indices, data.valid.indices)

    def read(chosen):
        return torch.from_numpy(take_rows(source, indices[chosen])).to(device)

    return _reference(spec, state, read, len(indices), device)


def _reference(spec, state, read, n_rows, device):
    """:meth:`NeighborReference.build` of ``n_rows`` rows read by ``read`` with the best weights."""
    model = build_module(spec, state["best_model"]).to(device).eval()
    return NeighborReference.build(read, n_rows, spec.n_features, model, seed=spec.seed)


def _carried(resume, data, partial, store_rows=True):
    """What each checkpoint of a run carries beside the trainer's state: the run's classes,
    and for an update, what the run it updates kept (landmarks, its sample of rows, the
    placement's reference, the resolved "auto" values), until the update's end replaces them."""
    carried = {} if data.classes is None else {"classes": data.classes.tolist()}
    if partial and resume is not None:
        kept = ("resolved", "data_range") + (("landmarks", "reservoir", "reference") if store_rows else ())
        carried.update({key: resume[key] for key in kept if resume.get(key) is not None})
    return carried


def _build_trainer(params, spec, data, device, distributed, writer, tensorboard, carried=None):
    model = build_module(spec).to(device)
    optimizer = make_adam(model.parameters(), params["learning_rate_init"])
    callbacks = [NonFiniteRollback()]
    if tensorboard is not None:
        callbacks.insert(0, TensorBoardScalars(tensorboard))
    if params["learning_rate"] == "adaptive":
        callbacks.append(LearningRatePlateau(optimizer, params["learning_rate_factor"], params["patience"],
                                             params["tol"], params["learning_rate_min"]))
    elif params["learning_rate"] == "cosine":
        max_steps = params["max_steps"]
        warmup = max_steps // COSINE_WARMUP_DIVISOR
        callbacks.append(CosineDecay(optimizer, params["learning_rate_init"], max_steps, warmup,
                                     params["learning_rate_min"]))
    if params["n_iter_no_change"] is not None:
        callbacks.append(EarlyStopping(params["n_iter_no_change"], params["tol"]))
    if params["verbose"] and distributed.is_main:
        callbacks.append(Progress())
    if writer is not None:
        callbacks.append(Checkpoint(writer.write_checkpoint, params["checkpoint_interval"], carried))
    loss = LossSettings(
        beta=params["beta"],
        free_bits=float(params["free_bits"]),
        # The reconstruction term grows with the number of features: so does the neighbour term.
        neighbor_weight=float(params["neighbor_weight"]) * spec.n_features,
        neighbor_objective=params["neighbor_objective"],
        gather=distributed.gather_rows if distributed.enabled else None,
    )
    config = TrainerConfig(
        max_steps=params["max_steps"],
        validation_interval=params["validation_interval"],
        kl_warmup_steps=params["kl_warmup_steps"],
        precision=params["precision"],
        compile=params["compile"],
        n_jobs=params["n_jobs"],
    )

    normalize = model.likelihood.scale_rows
    with_neighbors = params["neighbor_weight"] > 0
    train, valid, graph = data.train, data.valid, None
    if with_neighbors:
        graph = training_graph(train, normalize, params["n_neighbors"], device, distributed, graphs=writer)
    batches = training_batches(train, params["batch_size"], spec.seed, device, distributed, graph,
                               params["neighbor_samples"], params["target_weight"])
    # partial_fit validates on its training rows: their nearest neighbours are known
    same_rows = valid.source is train.source and np.array_equal(valid.indices, train.indices)
    nearest = graph[:, 0] if graph is not None and same_rows else None
    chunks = validation_chunks(valid, params["eval_batch_size"], device, distributed, normalize, with_neighbors,
                               nearest)
    local = local_batch_size(params["batch_size"], distributed.rank, distributed.world_size)
    batch_weight = local * distributed.world_size / params["batch_size"]
    return Trainer(model, optimizer, batches, chunks, loss, config, callbacks, distributed, batch_weight, spec.seed)


def warn_on_stop(params, state):
    """Warn about a fit that ended otherwise than by converging."""
    reason, step = state["stop_reason"], state["step"]
    if reason == "interrupted":
        warnings.warn(
            f"Training interrupted at step {step}; the model holds the best weights so far"
            + (f" and a checkpoint was saved in {params['logdir']!r}." if params["logdir"] is not None else "."),
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
    elif reason == "max_steps" and params["learning_rate"] == "adaptive":
        warnings.warn(
            f"Reached max_steps={params['max_steps']} before the learning rate fell below "
            f"learning_rate_min={params['learning_rate_min']}; the model may improve with more steps.",
            ConvergenceWarning,
            stacklevel=3,
        )
