"""``partial_fit``'s path: an update of a run on new rows.

An update replays rows the run stored beside the new ones (:func:`replayed`), trains one
pass over them at a constant rate from the run's best weights, keeps the landmarks a fit
stored in place (:class:`cvae.training.callbacks.Landmarks`), and adds its rows to the
run's sample of rows, by which the neighbour placement then places unseen rows. The first
update of an unfitted estimator sets the model up, as a fit would. ``fit``'s path is
:func:`cvae.training.lifecycle.fit_run`; both open the run the same way.
"""

import math

from ..data.preparation import prepare, with_replay
from ..spec import new_spec
from .callbacks import Landmarks
from .lifecycle import FitResult, opened_run, resolved_weight
from .plan import TrainingPlan
from .run import run_training
from .stored import (
    checked_landmarks,
    checked_reservoir,
    keeps_reference,
    replay_source,
    reservoir_reference,
    sampled_rows,
)

__all__ = ["replayed", "update_run"]


def replayed(X, y, sample_weight, params, run):
    """``(X, y, sample_weight)`` with rows the run stored drawn beside ``X``
    (:func:`cvae.data.preparation.with_replay`), when ``landmark_weight`` is above 0 and
    the run (an :class:`cvae.training.lifecycle.OpenedRun`) stores rows; before any run,
    ``X`` as it is."""
    if params["landmark_weight"] == 0 or not params["store_rows"] or run.resume is None:
        return X, y, sample_weight
    stored = replay_source(run.resume, run.spec)
    return with_replay(X, y, sample_weight, None if stored is None else stored.numpy(),
                       (run.spec.seed, run.resume["step"]))


def update_run(params, rows, sample_weight=None, fitted=None):
    """Update the run of the estimator parameters ``params`` (``fitted``, the estimator's
    own ``(spec, checkpoint)``, or else the run in its ``logdir``; a new run before any)
    with one pass over new rows; return a :class:`cvae.training.lifecycle.FitResult`.

    ``rows(replay)``, called once the run is open (its log directory locked, its
    checkpoint read once), returns ``(training source, validation source, labels, feature
    names, sample weights)`` as :func:`cvae.training.lifecycle.fit_run`'s ``rows()`` does,
    the validation rows being the training rows, after ``replay(X, y)`` has drawn the
    run's stored rows beside them (:func:`replayed`, with ``sample_weight``)."""
    with opened_run(params, fitted, warm_start=True) as run:
        source, valid, labels, feature_names, sample_weight = rows(
            lambda X, y: replayed(X, y, sample_weight, params, run))
        data = prepare(source, valid, params, run.seed, None, run.spec, run.logdir, sample_weight, labels,
                       run.classes, feature_names)
        resolved = resolved_weight(params, run, labels)
        # one pass at a constant rate, validated once, at its end
        end = (0 if run.resume is None else run.resume["step"]) + math.ceil(len(data.train) / params["batch_size"])
        resolved.update(max_steps=end, learning_rate="constant", validation_interval=end, n_iter_no_change=None)
        plan = TrainingPlan.from_params(params, **resolved)
        spec = run.spec if run.spec is not None else new_spec({**params, **resolved}, data, run.seed, feature_names)
        state = _train_update(params, plan, spec, data, run)
    return FitResult(spec, state, run.device, data, plan, run.distributed)


def _train_update(params, plan, spec, data, run):
    """The update's training run: from the run's best weights (none for a new run), the
    stored landmarks held in place, the stored parts carried by every checkpoint until the
    update's end replaces them."""
    resume, store = run.resume, plan.store_rows
    landmarks = reservoir = None
    callbacks, carried = [], {}
    if resume is not None:
        landmarks = checked_landmarks(resume.get("landmarks"), spec)
        reservoir = checked_reservoir(resume.get("reservoir"), spec)
        if landmarks is not None and plan.landmark_weight > 0 and store:
            callbacks.append(Landmarks(landmarks["rows"], landmarks["embedding"], plan.landmark_weight, spec.seed))
        kept = ("resolved", "data_range") + (("landmarks", "reservoir", "reference") if store else ())
        carried = {key: resume[key] for key in kept if resume.get(key) is not None}
        resume = _update_from(resume, plan.learning_rate_init)

    def keep(plan, spec, state, data, device):
        """The run's landmarks, its sample of rows with the update's, and the placement by it."""
        if not store:
            return {}
        kept = {"landmarks": landmarks,
                "reservoir": sampled_rows(reservoir, data.train.source, data.train.indices, spec.seed,
                                          plan.eval_batch_size)}
        if keeps_reference(plan, data.train.source):
            kept["reference"] = reservoir_reference(spec, state, kept["reservoir"]["rows"], device).state_dict()
        return kept

    return run_training(params, plan, spec, data, run.device, run.distributed, run.logdir, resume, keep,
                        callbacks, carried)


def _update_from(state, learning_rate):
    """``state`` as the start of an update on new rows: best weights, the learning rate
    reset, no best loss yet (the update's last validation keeps its weights), no batches."""
    optimizer = dict(state["optimizer"])
    optimizer["param_groups"] = [dict(group, lr=learning_rate) for group in optimizer["param_groups"]]
    return dict(state, model=state["best_model"], optimizer=optimizer, best_loss=float("inf"), batches=None)
