"""``partial_fit``'s path: an update of a run on new rows.

An update replays rows the run stored beside the new ones (:func:`replayed`), adds the
new categories of the run's covariates (:func:`cvae.training.widen.widened`), trains one
pass over them at a constant rate from the run's best weights, keeps the landmarks a fit
stored in place (:class:`cvae.training.callbacks.Landmarks`), and adds its rows to the
run's sample of rows, by which the neighbour placement then places unseen rows. The first
update of an unfitted estimator sets the model up, as a fit would. ``fit``'s path is
:func:`cvae.training.lifecycle.fit_run`; both open the run the same way.
"""

import math
from dataclasses import replace

from ..data.preparation import prepare, with_replay
from ..spec import new_spec
from .callbacks import Landmarks, TrainOnly
from .lifecycle import FitResult, opened_run, resolved_auto
from .plan import TrainingPlan
from .run import run_training, step_budget
from .widen import widened
from .stored import (
    keeps_reference,
    labelled_rows,
    replay_source,
    reservoir_reference,
    sampled_rows,
)

__all__ = ["replayed", "update_run"]


def replayed(X, y, covariates, sample_weight, params, run):
    """``(X, y, sample_weight, covariates)`` with rows the run stored drawn beside ``X``
    (:func:`cvae.data.preparation.with_replay`), when ``landmark_weight`` is above 0 and
    the run (an :class:`cvae.training.lifecycle.OpenedRun`) stores rows; before any run,
    ``X`` as it is. The stored rows carry their encoded covariates, decoded here."""
    if params["landmark_weight"] == 0 or not params["store_rows"] or run.resume is None:
        return X, y, sample_weight, covariates
    stored = replay_source(run.resume, run.spec)
    stored = None if stored is None else stored.numpy()
    stored_covariates = None
    if stored is not None and run.spec.covariates is not None:
        n = run.spec.n_features
        stored, stored_covariates = stored[:, :n], run.spec.covariates.decode(stored[:, n:])
    return with_replay(X, y, sample_weight, stored, (run.spec.seed, run.resume["step"]), covariates,
                       stored_covariates)


def update_run(params, rows, sample_weight=None, fitted=None):
    """Update the run of the estimator parameters ``params`` (``fitted``, the estimator's
    own ``(spec, checkpoint)``, or else the run in its ``logdir``; a new run before any)
    with one pass over new rows; return a :class:`cvae.training.lifecycle.FitResult`. An
    update whose covariates hold categories the run lacks adds them
    (:func:`cvae.training.widen.widened`) and trains for the steps a fit on its rows would
    take (``max_steps``, "auto" resolved for them): every weight, the landmarks holding the
    reference, or their weights alone (``freeze_reference``, or no landmarks).

    ``rows(replay)``, called once the run is open (its log directory locked, its
    checkpoint read once), returns ``(training source, validation source, labels, feature
    names, sample weights, covariates)`` as :func:`cvae.training.lifecycle.fit_run`'s
    ``rows()`` does, the validation rows being the training rows, after ``replay(X, y,
    covariates)`` has drawn the run's stored rows beside them (:func:`replayed`, with
    ``sample_weight``)."""
    with opened_run(params, fitted, warm_start=True) as run:
        source, valid, labels, feature_names, sample_weight, covariates = rows(
            lambda X, y, table: replayed(X, y, table, sample_weight, params, run))
        new_columns = None
        if run.spec is not None and run.spec.covariates is not None and covariates is not None:
            spec, resume, new_columns = widened(run.spec, run.resume, covariates)
            run = replace(run, spec=spec, resume=resume)
        data = prepare(source, valid, params, run.seed, None, run.spec, run.logdir, sample_weight, labels,
                       run.classes, feature_names, covariates)
        resolved = resolved_auto(params, run, labels, data)
        # one pass at a constant rate, validated once, at its end; a new category's weights
        # train alone for as many steps as a fit on the rows would take (max_steps)
        steps = math.ceil(len(data.train) / params["batch_size"])
        if new_columns is not None:
            steps = step_budget({**params, **resolved, "learning_rate": "constant"}, len(data.train))
        end = (0 if run.resume is None else run.resume["step"]) + steps
        resolved.update(max_steps=end, learning_rate="constant", validation_interval=end, n_iter_no_change=None)
        plan = TrainingPlan.from_params(params, **resolved)
        spec = run.spec if run.spec is not None else new_spec({**params, **resolved}, data, run.seed, feature_names)
        state = _train_update(params, plan, spec, data, run, new_columns)
    return FitResult(spec, state, run.device, data, plan, run.distributed)


def _train_update(params, plan, spec, data, run, new_columns=None):
    """The update's training run: from the run's best weights (none for a new run), the
    stored landmarks held in place, the stored parts carried by every checkpoint until the
    update's end replaces them; with ``new_columns`` (new categories of a covariate), only
    their weights train (:class:`cvae.training.callbacks.TrainOnly`) when the plan freezes
    the reference or no landmarks hold it."""
    resume, store = run.resume, plan.store_rows
    landmarks = reservoir = previous_labelled = None
    callbacks, carried, held, stored_labelled = [], {}, False, None
    if resume is not None:
        # checked when the run was opened (cvae.training.state)
        landmarks, reservoir, previous_labelled = (resume.get(key) for key in ("landmarks", "reservoir", "labelled"))
        if landmarks is not None and plan.landmark_weight > 0 and store:
            callbacks.append(Landmarks(landmarks["rows"], landmarks["embedding"], plan.landmark_weight, spec.seed))
            held = True
        kept = ("resolved", "data_range") + (("landmarks", "reservoir", "reference", "labelled") if store else ())
        carried = {key: resume[key] for key in kept if resume.get(key) is not None}
        resume = _update_from(resume, plan.learning_rate_init)
    if new_columns is not None and (plan.freeze_reference or not held):
        callbacks.append(TrainOnly(new_columns))
    elif previous_labelled is not None and store:
        # the encoder moves under the classifier: its stored labelled rows keep training it
        stored_labelled = (previous_labelled["rows"].numpy(), previous_labelled["labels"].numpy())

    def keep(plan, spec, state, data, device):
        """The run's landmarks, its sample of rows with the update's, and the placement by it."""
        if not store:
            return {}
        kept = {"landmarks": landmarks,
                "reservoir": sampled_rows(reservoir, data.train.source, data.train.indices, spec.seed,
                                          plan.eval_batch_size)}
        labelled = labelled_rows(previous_labelled, data, spec.seed, plan.eval_batch_size)
        if labelled is not None:
            kept["labelled"] = labelled
        if keeps_reference(plan, data.train.source):
            kept["reference"] = reservoir_reference(spec, state, kept["reservoir"]["rows"], device).state_dict()
        return kept

    return run_training(params, plan, spec, data, run.device, run.distributed, run.logdir, resume, keep,
                        callbacks, carried, stored_labelled)


def _update_from(state, learning_rate):
    """``state`` as the start of an update on new rows: best weights, the learning rate
    reset, no best loss yet (the update's last validation keeps its weights), no batches."""
    optimizer = dict(state["optimizer"])
    optimizer["param_groups"] = [dict(group, lr=learning_rate) for group in optimizer["param_groups"]]
    return dict(state, model=state["best_model"], optimizer=optimizer, best_loss=float("inf"), batches=None)
