"""The optimization loop: steps, validation, best weights; its features are callbacks."""

import copy
import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from typing import Optional

import torch

from .. import _random
from ..nn.vae import LossSettings, load_weights
from .distributed import Distributed
from .environment import ctrl_c_calls, flush_denormals_to_zero, resolve_precision, threads_for_step, step_multiply_adds

__all__ = ["Trainer", "TrainerConfig", "evaluate", "make_adam"]

# Names of the ``precision`` settings and the 16-bit type each computes matrix products in.
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class TrainerConfig:
    """Settings of the loop itself (see :class:`cvae.CompressionVAE` for their meaning)."""

    max_steps: int
    validation_interval: int
    kl_warmup_steps: int = 0
    precision: str = "float32"
    compile: bool = False
    n_jobs: Optional[int] = None


@torch.no_grad()
def evaluate(model, chunks, loss=LossSettings(), distributed=Distributed()):
    """Mean loss, reconstruction log-likelihood and KL of ``model`` over ``chunks`` (eval mode).

    ``chunks`` is an iterable of :class:`cvae.data.rows.Batch` es on the model's device; with
    neighbour rows, their neighbour term joins the loss. The loss is the one
    ``loss`` describes without free bits and with every row's reconstruction: the negative
    ELBO (with ``beta``) plus the neighbour term. In a distributed run each process passes
    its shard and the means are over all of them.
    """
    device = next(model.parameters()).device
    # a fixed stream: successive validations see the same noise (common random numbers), so
    # a change in validation loss is a change in the model, and plateaus are not noise
    generator = _random.generator("validation", distributed.rank, device=device)
    exact = replace(loss, free_bits=0.0, reconstruction_fraction=1.0)  # the objective, every row's terms
    return _evaluate(model, chunks, exact, distributed, device, generator)


def _evaluate(model, chunks, loss, distributed, device, generator):
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, device=device, dtype=torch.float64)
    for batch in chunks:
        x, neighbors, weights = batch
        out = model(x, loss, neighbors=neighbors, weights=weights, generator=generator)
        if weights is None:
            n = len(out.kl)
            terms = [out.loss * n, out.log_likelihood.sum(), out.kl.sum(), out.kl.new_tensor(n)]
        else:  # out.loss is the batch's mean of weighted terms
            terms = [out.loss * len(out.kl), (weights * out.log_likelihood).sum(), (weights * out.kl).sum(),
                     weights.sum()]
        totals += torch.stack(terms).double()
    model.train(was_training)
    distributed.sum(totals)
    mean_loss, log_likelihood, kl = (totals[:3] / totals[3]).tolist()
    return {"loss": mean_loss, "log_likelihood": log_likelihood, "kl": kl}


def make_adam(params, lr):
    """Adam with its fused kernel where this PyTorch build has one for the parameters' device.

    The fused update runs in one kernel instead of a Python loop over tensors (faster on a
    CPU: benchmarks/README.md). Older PyTorch releases reject ``fused=True`` on the CPU, so
    fall back to the default implementation.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)


def cpp_compiler_found():
    """Whether ``torch.compile`` finds a C++ compiler to build CPU kernels with."""
    compilers = (os.environ.get("CXX"), "c++", "g++", "clang++")
    return any(shutil.which(c) for c in compilers if c)


class CompilerNotFound(RuntimeError):
    """``compile=True`` on a CPU without a C++ compiler."""


def _check_compiler(device):
    """Fail early, and say why, where ``torch.compile`` would fail at the first step."""
    if device.type == "cpu" and not cpp_compiler_found():
        raise CompilerNotFound(
            "compile=True needs a C++ compiler for torch.compile on the CPU, and none was found "
            "(no c++, g++ or clang++ on the PATH, and CXX is not set). Install one, or set compile=False."
        )


def _clone_state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Trainer:
    """Runs Adam steps on shuffled batches and validates every ``validation_interval`` steps.

    The loop keeps the weights with the best finite validation loss and one history row per
    validation; everything else (learning-rate schedule, stopping rules, rollback,
    checkpoints, progress, TensorBoard) is a :class:`cvae.training.callbacks.Callback`.
    Training ends at ``max_steps``, when a callback calls :meth:`stop`, or when
    :meth:`request_stop` is called (Ctrl-C).

    Parameters
    ----------
    model : cvae.nn.VAE
        Module to train, on the training device.
    optimizer : torch.optim.Optimizer
    batches : cvae.data.batches.BatchIterator or cvae.data.batches.StreamingBatches
        Endless training batches on the model's device (this process's shard), each a
        :class:`cvae.data.rows.Batch` (rows, and their neighbours' rows for the neighbour term).
    valid_chunks : iterable of cvae.data.rows.Batch
        Re-iterable validation rows on the model's device (this process's shard), such as
        :class:`cvae.data.rows.TensorChunks`.
    loss : cvae.nn.vae.LossSettings
        The training loss; validation uses it without free bits, every row reconstructed.
    config : TrainerConfig
    callbacks : sequence of Callback, default=()
    distributed : cvae.training.distributed.Distributed, default=Distributed()
        In a run of several processes, the model is trained through
        ``DistributedDataParallel``, and validation sums, train losses and the stop flag
        are shared, so that every process takes the same decisions.
    batch_weight : float, default=1.0
        Factor on this process's loss: its share of the global batch times the number of
        processes, so that the averaged gradient is the gradient of the global batch mean.
    seed : int, default=0
        Seeds :attr:`generator`, on the model's device, from which the training steps draw
        their noise, dropout masks and negatives; saved with the run, so that a continued
        run draws what the uninterrupted one would have. Processes other than the first
        draw from a generator seeded by the seed, their rank and the step they start at.
    """

    def __init__(self, model, optimizer, batches, valid_chunks, loss, config, callbacks=(),
                 distributed=Distributed(), batch_weight=1.0, seed=0):
        self.model = model
        self.optimizer = optimizer
        self.batches = batches
        self.valid_chunks = valid_chunks
        self.loss = loss
        self.config = config
        self.callbacks = list(callbacks)
        self.distributed = distributed
        self.batch_weight = batch_weight
        self.device = next(model.parameters()).device
        self.seed = seed
        self._train_model = distributed.wrap(model)
        if config.compile:
            _check_compiler(self.device)
            # Only the training pass: validation and inference keep the eager module.
            # dynamic=True: one compilation serves every batch size, an epoch's last included.
            self._train_model = torch.compile(self._train_model, dynamic=True)
        self._step_multiply_adds = step_multiply_adds(model, batches.batch_size)
        self.precision = resolve_precision(config.precision, self.device, self._step_multiply_adds)
        self._autocast_dtype = PRECISIONS[self.precision]
        # float16's narrow range needs loss scaling; bfloat16 has float32's exponent range.
        self._scaler = torch.amp.GradScaler(self.device.type) if self.precision == "float16" else None
        self.step = 0
        self.elapsed = 0.0
        self.best_loss = math.inf
        self.best_model = _clone_state(model)
        self.history = []
        self.stop_reason = None
        self._stop_requested = False
        self.threads = None
        self.generator = self._seeded_generator()

    def _seeded_generator(self):
        return _random.generator("noise", self.seed, self.distributed.rank, self.step, device=self.device)

    @property
    def learning_rate(self):
        return self.optimizer.param_groups[0]["lr"]

    def stop(self, reason):
        """End the run after the current step, for ``reason`` (what ``stop_reason_`` says)."""
        self.stop_reason = reason

    def request_stop(self):
        """Ask the loop to end after the current step as interrupted (what Ctrl-C does)."""
        self._stop_requested = True

    def _step_loss(self):
        warmup = self.config.kl_warmup_steps
        if not warmup or self.step + 1 >= warmup:
            return self.loss
        return replace(self.loss, beta=self.loss.beta * ((self.step + 1) / warmup))

    def _train_step(self, batch):
        x, neighbors, weights = batch
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None):
            # The noise is drawn here, outside a compiled module's graph, which a draw from a
            # given generator would break.
            eps = torch.randn(len(x), self.model.n_latent, generator=self.generator, device=self.device)
            out = self._train_model(x, self._step_loss(), eps=eps, neighbors=neighbors, weights=weights,
                                    generator=self.generator)
            loss = out.loss
            for callback in self.callbacks:
                term = callback.extra_loss(self)
                if term is not None:
                    loss = loss + term
        loss = loss * self.batch_weight if self.batch_weight != 1.0 else loss
        if self._scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self._scaler.scale(loss).backward()
            self._scaler.step(self.optimizer)
            self._scaler.update()
        return out.loss.detach()

    def _validate(self, train_loss):
        scores = evaluate(self.model, self.valid_chunks, self.loss, self.distributed)
        row = {
            "step": self.step,
            "train_loss": train_loss,
            "validation_loss": scores["loss"],
            "validation_log_likelihood": scores["log_likelihood"],
            "validation_kl": scores["kl"],
            # the ELBO alone (beta 1, no neighbour term), what score() reports
            "validation_elbo": scores["log_likelihood"] - scores["kl"],
            "learning_rate": self.learning_rate,
            "elapsed_seconds": self.elapsed,
        }
        self.history.append(row)
        if math.isfinite(row["validation_loss"]) and row["validation_loss"] < self.best_loss:
            self.best_loss = row["validation_loss"]
            self.best_model = _clone_state(self.model)
        self._call("on_validation_end", row)

    def _validate_steps(self, train_sum, n_summed, started):
        """Validate after ``n_summed`` steps whose losses add up to ``train_sum`` (then zeroed),
        counting the time since ``started``; returns the new start of the clock."""
        self.elapsed += time.perf_counter() - started
        started = time.perf_counter()
        summed = self.distributed.sum(train_sum).item()
        train_sum.zero_()
        self._validate(summed / n_summed / self.distributed.world_size)
        return started

    def _call(self, hook, *args):
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def run(self):
        """Train until a stop; return the stop reason.

        The loop flushes denormals to zero, runs on the CPU threads that
        :func:`~cvae.training.environment.threads_for_step` chooses (``config.n_jobs``, or
        by the step's size and the free CPUs), and Ctrl-C stops it cleanly after the current
        step (see :mod:`cvae.training.environment`).

        Returns
        -------
        stop_reason : {"max_steps", "interrupted"} or a reason given to :meth:`stop`
        """
        self._stop_requested = False
        self.stop_reason = None
        with flush_denormals_to_zero(), ctrl_c_calls(self.request_stop), threads_for_step(
            self._step_multiply_adds, self.device, self.config.n_jobs
        ):
            return self._loop()

    def _loop(self):
        cfg = self.config
        self.threads = torch.get_num_threads()  # the CPU threads this run chose
        self.model.train()
        self._call("on_train_begin")
        train_sum = torch.zeros((), device=self.device)
        n_summed = 0
        started = time.perf_counter()
        try:
            while self.stop_reason is None:
                if self.step >= cfg.max_steps:
                    self.stop("max_steps")
                elif self.distributed.any(self._stop_requested, self.device):
                    if n_summed:  # the steps since the last validation count too
                        started = self._validate_steps(train_sum, n_summed, started)
                    self.stop("interrupted")
                else:
                    train_sum += self._train_step(next(self.batches))
                    n_summed += 1
                    self.step += 1
                    if self.step % cfg.validation_interval == 0 or self.step == cfg.max_steps:
                        started = self._validate_steps(train_sum, n_summed, started)
                        n_summed = 0
                    if self.stop_reason is None:
                        self._call("on_step_end")
        finally:
            self.elapsed += time.perf_counter() - started
            self._call("on_train_end")
        return self.stop_reason

    def state_dict(self):
        """Everything needed to continue this run exactly: weights, optimizer, callbacks, RNG."""
        state = {
            "model": self.model.state_dict(),
            "best_model": self.best_model,
            "optimizer": self.optimizer.state_dict(),
            "callbacks": {c.key: c.state_dict() for c in self.callbacks if c.key is not None},
            "grad_scaler": None if self._scaler is None else self._scaler.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "best_loss": self.best_loss,
            "history": self.history,
            "stop_reason": self.stop_reason,
            "batches": self.batches.state_dict(),
            "generator": self.generator.get_state(),
        }
        return _to_cpu(state)

    def load_state_dict(self, state):
        """Continue the run saved by :meth:`state_dict`."""
        load_weights(self.model, state["best_model"])
        self.best_model = _clone_state(self.model)
        load_weights(self.model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for callback in self.callbacks:
            if callback.key is not None and callback.key in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][callback.key])
        if self._scaler is not None and state.get("grad_scaler"):
            self._scaler.load_state_dict(state["grad_scaler"])
        self.step = state["step"]
        self.elapsed = state["elapsed"]
        self.best_loss = state["best_loss"]
        self.history = copy.deepcopy(state["history"])
        self.stop_reason = state["stop_reason"]
        if state.get("batches") is not None:  # None: new rows, whose batches start afresh
            self.batches.load_state_dict(
                {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in state["batches"].items()}
            )
        # The saved generator is the first process's; the others, a run saved on another kind
        # of device, and runs saved before generators were saved start a stream at this step.
        saved = state.get("generator") if self.distributed.rank == 0 else None
        if saved is not None and saved.shape == self.generator.get_state().shape:
            self.generator.set_state(saved)
        else:
            self.generator = self._seeded_generator()


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
