"""Features of the training loop, one class each, called by :class:`cvae.training.Trainer`.

A callback sees the trainer at four moments (the loop's start and end, after every
step, after every validation with the new history row), may add a term to each step's
loss (``extra_loss``) and may end the run with :meth:`Trainer.stop`. Callbacks with state
(a scheduler, a count) save it in the checkpoint under their ``key`` and get it back on
resume. They run in the order given.
"""

import logging
import math
import sys

import numpy as np
import torch

from .. import _random
from ..data.rows import take_rows

__all__ = [
    "Callback",
    "Checkpoint",
    "ClassifierLoss",
    "CosineDecay",
    "EarlyStopping",
    "Landmarks",
    "LearningRatePlateau",
    "NonFiniteRollback",
    "Progress",
    "TensorBoardScalars",
    "TrainOnly",
]

logger = logging.getLogger("cvae.training.trainer")


class Callback:
    """Base class: every hook does nothing."""

    #: Name of this callback's entry in the checkpoint; ``None`` for callbacks without state.
    key = None

    def on_train_begin(self, trainer):
        pass

    def on_step_end(self, trainer):
        pass

    def on_validation_end(self, trainer, row):
        pass

    def on_train_end(self, trainer):
        pass

    def extra_loss(self, trainer):
        """A term to add to this step's training loss (a scalar tensor), or ``None``."""
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class LearningRatePlateau(Callback):
    """Divide the learning rate by ``factor`` after ``patience`` validations without a new
    best (by more than ``tol``), and stop as converged once it falls below ``min_lr``.

    Non-finite validation losses are left to :class:`NonFiniteRollback`.
    """

    key = "scheduler"

    def __init__(self, optimizer, factor, patience, tol, min_lr):
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=1.0 / factor, patience=patience, threshold=tol, threshold_mode="abs"
        )
        self.min_lr = min_lr

    def on_validation_end(self, trainer, row):
        loss = row["validation_loss"]
        if not math.isfinite(loss):
            return
        self.scheduler.step(loss)
        if trainer.learning_rate < self.min_lr:
            trainer.stop("converged")

    def state_dict(self):
        return self.scheduler.state_dict()

    def load_state_dict(self, state):
        self.scheduler.load_state_dict(state)


class CosineDecay(Callback):
    """Raise the learning rate linearly from near 0 to ``peak_lr`` over ``warmup_steps``,
    then lower it along a half cosine to ``min_lr`` at ``total_steps`` (Loshchilov and
    Hutter, 2017, without restarts). The rate is a function of the step alone, so a
    resumed run continues it exactly; it needs no state of its own."""

    def __init__(self, optimizer, peak_lr, total_steps, warmup_steps=0, min_lr=0.0):
        self.optimizer = optimizer
        self.peak_lr = peak_lr
        self.total_steps = max(1, total_steps)
        self.warmup_steps = min(warmup_steps, self.total_steps)
        self.min_lr = min_lr

    def rate(self, step):
        """The learning rate of step ``step + 1`` (the step after ``step`` steps)."""
        if step < self.warmup_steps:
            return self.peak_lr * (step + 1) / self.warmup_steps
        # the last step (``step == total_steps - 1``) is taken at ``min_lr``
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - 1 - self.warmup_steps))
        return self.min_lr + 0.5 * (self.peak_lr - self.min_lr) * (1 + math.cos(math.pi * progress))

    def _set(self, trainer):
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate(trainer.step)

    def on_train_begin(self, trainer):
        self._set(trainer)

    def on_step_end(self, trainer):
        self._set(trainer)


class EarlyStopping(Callback):
    """Stop as ``"no_improvement"`` after ``patience`` validations in a row without a new
    best validation loss (by more than ``tol``); the trainer keeps the best weights."""

    key = "early_stopping"

    def __init__(self, patience, tol=0.0):
        self.patience = patience
        self.tol = tol
        self.best = math.inf
        self.stale = 0

    def on_validation_end(self, trainer, row):
        loss = row["validation_loss"]
        if math.isfinite(loss) and loss < self.best - self.tol:
            self.best, self.stale = loss, 0
        else:
            self.stale += 1
        if self.stale >= self.patience:
            trainer.stop("no_improvement")

    def state_dict(self):
        return {"best": self.best, "stale": self.stale}

    def load_state_dict(self, state):
        self.best, self.stale = float(state["best"]), int(state["stale"])


class NonFiniteRollback(Callback):
    """On a non-finite validation loss, go back to the best weights with a tenth of the
    learning rate and fresh Adam moments; after ``max_rollbacks`` of them, stop as diverged
    with the best weights."""

    key = "rollbacks"

    def __init__(self, max_rollbacks=3):
        self.max_rollbacks = max_rollbacks
        self.count = 0

    def on_validation_end(self, trainer, row):
        if math.isfinite(row["validation_loss"]):
            return
        trainer.model.load_state_dict(trainer.best_model)
        if self.count >= self.max_rollbacks:
            trainer.stop("diverged")
            return
        self.count += 1
        trainer.optimizer.state.clear()
        for group in trainer.optimizer.param_groups:
            group["lr"] /= 10
        logger.warning(
            "Non-finite validation loss at step %d; restored the best weights and lowered the "
            "learning rate to %.3g (rollback %d of %d).",
            trainer.step, trainer.learning_rate, self.count, self.max_rollbacks,
        )

    def on_train_end(self, trainer):
        if trainer.history and not math.isfinite(trainer.best_loss):  # no validation was ever finite
            trainer.stop_reason = "diverged"

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = int(state["count"])


class Checkpoint(Callback):
    """Pass :meth:`Trainer.state_dict` to ``write`` every ``interval`` steps, with the entries
    of ``carried`` beside it: what the run keeps apart from the trainer (its classes, and an
    update's landmarks and sample of earlier rows), so that a run killed after a checkpoint
    loses none of it."""

    def __init__(self, write, interval, carried=None):
        self.write = write
        self.interval = interval
        self.carried = {} if carried is None else carried

    def on_step_end(self, trainer):
        if trainer.step % self.interval == 0:
            self.write({**trainer.state_dict(), **self.carried})


class TensorBoardScalars(Callback):
    """Write each history row to a :class:`cvae.training.tensorboard.TensorBoardLog`."""

    def __init__(self, log):
        self.log = log

    def on_validation_end(self, trainer, row):
        self.log.write_scalars(row)


class Progress(Callback):
    """A progress bar with step, losses and learning rate where one can redraw (a terminal
    or a notebook, with tqdm installed); elsewhere one line per validation. A first line
    states the budget, device, CPU threads and precision the fit chose. Lines go to the
    ``cvae.training.trainer`` logger at level INFO where logging is configured, else to
    standard error."""

    def __init__(self):
        self.bar = None

    def on_train_begin(self, trainer):
        _say(
            "Training to step %d from step %d on %s: %d CPU thread(s), %s precision, batch %d rows",
            trainer.config.max_steps, trainer.step, trainer.device, torch.get_num_threads(), trainer.precision,
            trainer.batches.batch_size,
        )
        if _interactive():
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=trainer.config.max_steps, initial=trainer.step, unit="step", dynamic_ncols=True)
            self._shown = trainer.step

    def on_step_end(self, trainer):
        if self.bar is not None and trainer.step - self._shown >= 50:
            self.bar.update(trainer.step - self._shown)
            self._shown = trainer.step

    def on_validation_end(self, trainer, row):
        fields = {
            "train": f"{row['train_loss']:.4g}",
            "valid": f"{row['validation_loss']:.4g}",
            "lr": f"{row['learning_rate']:.2g}",
        }
        if self.bar is not None:
            self.bar.set_postfix(fields, refresh=False)
        else:
            _say(
                "step %d/%d %s (%.0f s)", trainer.step, trainer.config.max_steps,
                " ".join(f"{k}={v}" for k, v in fields.items()), row["elapsed_seconds"],
            )

    def on_train_end(self, trainer):
        if self.bar is not None:
            self.bar.update(trainer.step - self._shown)
            self.bar.close()
            self.bar = None


def _say(message, *args):
    """``message % args`` to the logger where logging is configured, else to standard error."""
    if logger.isEnabledFor(logging.INFO) and logger.hasHandlers():
        logger.info(message, *args)
    else:
        print(message % args, file=sys.stderr, flush=True)


def _interactive():
    """True where a progress bar can redraw: a terminal, or a Jupyter kernel."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class TrainOnly(Callback):
    """Train only chosen columns of chosen weights, every other parameter held as it is:
    ``partial_fit`` that adds categories of a covariate trains the weights of the new ones
    alone (architecture surgery, as scArches maps a query onto a reference), so that the
    reference's rows embed and decode exactly as before.

    Parameters
    ----------
    columns : dict of str to list of int
        For each parameter (by its name in the model) that may train, the columns that do.
    """

    def __init__(self, columns):
        self.columns = columns
        self._handles = []

    def on_train_begin(self, trainer):
        for name, parameter in trainer.model.named_parameters():
            mask = torch.zeros_like(parameter)
            if name in self.columns:
                mask[:, self.columns[name]] = 1
            self._handles.append(parameter.register_hook(lambda grad, mask=mask: grad * mask))
            # Adam moves a parameter by its moments even at a zero gradient: they start at zero
            for moment in trainer.optimizer.state.get(parameter, {}).values():
                if isinstance(moment, torch.Tensor) and moment.shape == parameter.shape:
                    moment.zero_()

    def on_train_end(self, trainer):
        for handle in self._handles:
            handle.remove()
        self._handles = []


class Landmarks(Callback):
    """Keep earlier rows where they were in the embedding while new rows train the model
    (``partial_fit`` after a fit): each step adds ``weight`` times the mean squared distance
    between the model's embedding of ``batch_size`` stored rows, drawn afresh each step,
    and the embedding they had when they were stored.

    Parameters
    ----------
    rows, embedding : torch.Tensor of shape (n_landmarks, n_features) and (n_landmarks, n_latent)
    weight : float
        Above 0; the term is scaled like the reconstruction term, which sums over features.
    seed : int
        The draws of step ``s`` come from ``seed + s``: a continued run draws the same.
    """

    def __init__(self, rows, embedding, weight, seed, batch_size=256):
        self.rows, self.embedding = rows, embedding
        self.weight, self.seed, self.batch_size = weight, seed, batch_size

    def on_train_begin(self, trainer):
        self.rows, self.embedding = self.rows.to(trainer.device), self.embedding.to(trainer.device)

    def extra_loss(self, trainer):
        generator = _random.generator("landmark_picks", self.seed, trainer.step)
        pick = torch.randint(len(self.rows), (min(self.batch_size, len(self.rows)),), generator=generator)
        pick = pick.to(trainer.device)
        moved = trainer.model.embed(self.rows[pick]).float() - self.embedding[pick]
        return self.weight * self.rows.shape[1] * moved.square().sum(dim=1).mean()


class ClassifierLoss(Callback):
    """Train the model's classifier (:meth:`cvae.nn.VAE.classify`) beside the ELBO, as M2
    and scANVI do: each step adds ``weight`` times the mean cross-entropy of the classes of
    ``batch_size`` labelled rows, drawn afresh each step, so that a few labels among many
    rows train it at every step.

    Parameters
    ----------
    source : cvae.data.sources.RowSource
        Where the labelled rows are read from (their covariates after them).
    indices, codes : ndarray of shape (n_labelled,)
        The labelled rows' indices in ``source`` and their class codes.
    weight : float
        Above 0, the estimator's ``classifier_weight`` times the features: scaled like the
        reconstruction term, which sums over them.
    seed : int
        The draws of step ``s`` come from the stream ``classifier_picks`` at ``s``: a
        continued run draws the same.
    """

    def __init__(self, source, indices, codes, weight, seed, batch_size=256):
        self.source, self.indices, self.codes = source, indices, torch.as_tensor(codes, dtype=torch.int64)
        self.weight, self.seed, self.batch_size = weight, seed, batch_size

    def extra_loss(self, trainer):
        generator = _random.generator("classifier_picks", self.seed, trainer.step)
        pick = torch.randint(len(self.indices), (min(self.batch_size, len(self.indices)),), generator=generator)
        pick = pick.sort().values
        rows = torch.from_numpy(np.ascontiguousarray(take_rows(self.source, self.indices[pick.numpy()]),
                                                     dtype=np.float32)).to(trainer.device)
        logits = trainer.model.classify(rows, trainer.generator)
        cross_entropy = torch.nn.functional.cross_entropy(logits, self.codes[pick].to(trainer.device))
        return self.weight * cross_entropy
