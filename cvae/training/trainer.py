"""The optimization loop: steps, validation, learning-rate plateaus, best-weight restore."""

import copy
import logging
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .._validation import isolated_rng
from .distributed import Distributed
from .environment import ctrl_c_calls, flush_denormals_to_zero

__all__ = ["Trainer", "TrainerConfig", "evaluate", "make_adam"]

logger = logging.getLogger(__name__)

# Names of the ``precision`` settings and the 16-bit type each computes matrix products in.
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}

# A non-finite validation loss rolls the model back to its best weights with a lower
# learning rate; after this many rollbacks in one run training stops.
MAX_ROLLBACKS = 3


@dataclass
class TrainerConfig:
    """Settings of one training run (see :class:`cvae.CompressionVAE` for their meaning)."""

    max_steps: int
    validation_interval: int
    eval_batch_size: int
    beta: float = 1.0
    kl_warmup_steps: int = 0
    free_bits: float = 0.0
    neighbor_weight: float = 0.0
    neighbor_objective: str = "umap"
    learning_rate_min: float = 0.0
    checkpoint_interval: int = 0
    precision: str = "float32"
    compile: bool = False
    verbose: bool = False


# Validation draws its posterior samples from this fixed seed: successive validations then
# see the same noise (common random numbers), so a change in validation loss reflects a
# change in the model, and plateau detection is not fooled by sampling noise.
VALIDATION_SEED = 0


@torch.no_grad()
def evaluate(model, chunks, beta=1.0, distributed=Distributed(), neighbor_weight=0.0, neighbor_objective="umap"):
    """Mean loss, reconstruction log-likelihood and KL of ``model`` over ``chunks`` (eval mode).

    ``chunks`` is an iterable of row tensors on the model's device, or of ``(rows,
    neighbours)`` pairs, whose neighbour term then joins the loss; in a distributed run
    each process passes its shard and the means are over all of them.
    """
    device = next(model.parameters()).device
    with isolated_rng(device):
        torch.manual_seed(VALIDATION_SEED + distributed.rank)
        return _evaluate(model, chunks, beta, distributed, device, neighbor_weight, neighbor_objective)


def _evaluate(model, chunks, beta, distributed, device, neighbor_weight, neighbor_objective):
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, device=device, dtype=torch.float64)
    for batch in chunks:
        x, neighbors = _rows_and_neighbors(batch)
        out = model(x, beta=beta, neighbors=neighbors, neighbor_weight=neighbor_weight,
                    neighbor_objective=neighbor_objective)
        n = len(out.kl)
        totals += torch.stack([out.loss * n, out.log_likelihood.sum(), out.kl.sum(), out.kl.new_tensor(n)]).double()
    model.train(was_training)
    distributed.sum(totals)
    loss, log_likelihood, kl = (totals[:3] / totals[3]).tolist()
    return {"loss": loss, "log_likelihood": log_likelihood, "kl": kl}


def _rows_and_neighbors(batch):
    """``(rows, neighbours)`` of a batch that is a row tensor or such a pair."""
    return batch if isinstance(batch, tuple) else (batch, None)


def make_adam(params, lr):
    """Adam with its fused kernel where this PyTorch build has one for the parameters' device.

    The fused update runs in one kernel instead of a Python loop over tensors; on a 2-core
    CPU it trains the 784-512-256-2 model 20-45% faster (batch 128-64). Older PyTorch
    releases reject ``fused=True`` on the CPU, so fall back to the default implementation.
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


def _check_compiler(device):
    """Fail early, and say why, where ``torch.compile`` would fail at the first step."""
    if device.type == "cpu" and not cpp_compiler_found():
        raise RuntimeError(
            "compile=True needs a C++ compiler for torch.compile on the CPU, and none was found "
            "(no c++, g++ or clang++ on the PATH, and CXX is not set). Install one, or set compile=False."
        )


def _clone_state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class Trainer:
    """Runs Adam steps on shuffled batches and validates every ``validation_interval`` steps.

    After each validation the plateau scheduler sees the validation loss; training ends
    when the learning rate falls below ``learning_rate_min`` (converged), when
    ``max_steps`` is reached, or when :meth:`request_stop` is called (Ctrl-C). The loop
    keeps the weights with the best validation loss, which :meth:`restore_best` loads back.

    Parameters
    ----------
    model : cvae.nn.VAE
        Module to train, on the training device.
    optimizer : torch.optim.Optimizer
    scheduler : torch.optim.lr_scheduler.ReduceLROnPlateau or None
        ``None`` keeps the learning rate constant.
    batches : cvae.data.BatchIterator or cvae.data.StreamingBatches
        Endless training batches on the model's device (this process's shard): row
        tensors, or ``(rows, neighbours)`` pairs for the neighbour-preserving loss.
    valid_chunks : iterable of torch.Tensor
        Re-iterable validation rows on the model's device (this process's shard), such as
        :class:`cvae.data.TensorChunks`.
    config : TrainerConfig
    on_checkpoint : callable, default=None
        Called with :meth:`state_dict` every ``checkpoint_interval`` steps.
    on_validation : callable, default=None
        Called with each new history row (a dict) right after it is recorded.
    distributed : cvae.training.distributed.Distributed, default=Distributed()
        In a run of several processes, the model is trained through
        ``DistributedDataParallel``, and validation sums, train losses and the stop flag
        are shared, so that every process takes the same decisions.
    batch_weight : float, default=1.0
        Factor on this process's loss: its share of the global batch times the number of
        processes, so that the averaged gradient is the gradient of the global batch mean.
    """

    def __init__(self, model, optimizer, scheduler, batches, valid_chunks, config, on_checkpoint=None,
                 on_validation=None, distributed=Distributed(), batch_weight=1.0):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.batches = batches
        self.valid_chunks = valid_chunks
        self.config = config
        self.on_checkpoint = on_checkpoint
        self.on_validation = on_validation
        self.distributed = distributed
        self.batch_weight = batch_weight
        self.device = next(model.parameters()).device
        self._train_model = distributed.wrap(model)
        if config.compile:
            _check_compiler(self.device)
            # Only the training pass: validation and inference keep the eager module.
            # dynamic=True: one compilation serves every batch size, an epoch's last included.
            self._train_model = torch.compile(self._train_model, dynamic=True)
        self._autocast_dtype = PRECISIONS[config.precision]
        # float16's narrow range needs loss scaling; bfloat16 has float32's exponent range.
        self._scaler = torch.amp.GradScaler(self.device.type) if config.precision == "float16" else None
        self.step = 0
        self.elapsed = 0.0
        self.best_loss = math.inf
        self.best_model = _clone_state(model)
        self.history = []
        self.rollbacks = 0
        self.stop_reason = None
        self._stop_requested = False

    @property
    def learning_rate(self):
        return self.optimizer.param_groups[0]["lr"]

    def _beta(self):
        warmup = self.config.kl_warmup_steps
        return self.config.beta * (min(1.0, (self.step + 1) / warmup) if warmup else 1.0)

    def _train_step(self, batch):
        x, neighbors = _rows_and_neighbors(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=self._autocast_dtype, enabled=self._autocast_dtype is not None):
            out = self._train_model(x, beta=self._beta(), free_bits=self.config.free_bits, neighbors=neighbors,
                                    neighbor_weight=self.config.neighbor_weight,
                                    neighbor_objective=self.config.neighbor_objective)
        loss = out.loss * self.batch_weight if self.batch_weight != 1.0 else out.loss
        if self._scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self._scaler.scale(loss).backward()
            self._scaler.step(self.optimizer)
            self._scaler.update()
        return out.loss.detach()

    def _roll_back(self):
        self.rollbacks += 1
        self.model.load_state_dict(self.best_model)
        self.optimizer.state.clear()
        for group in self.optimizer.param_groups:
            group["lr"] /= 10
        logger.warning(
            "Non-finite validation loss at step %d; restored the best weights and lowered the "
            "learning rate to %.3g (rollback %d of %d).",
            self.step, self.learning_rate, self.rollbacks, MAX_ROLLBACKS,
        )

    def _validate(self, train_loss):
        scores = evaluate(self.model, self.valid_chunks, beta=self.config.beta, distributed=self.distributed,
                          neighbor_weight=self.config.neighbor_weight,
                          neighbor_objective=self.config.neighbor_objective)
        self.history.append(
            {
                "step": self.step,
                "train_loss": train_loss,
                "validation_loss": scores["loss"],
                "validation_log_likelihood": scores["log_likelihood"],
                "validation_kl": scores["kl"],
                "learning_rate": self.learning_rate,
                "elapsed_seconds": self.elapsed,
            }
        )
        if self.on_validation is not None:
            self.on_validation(self.history[-1])
        loss = scores["loss"]
        if not math.isfinite(loss):
            if self.rollbacks >= MAX_ROLLBACKS:
                self.model.load_state_dict(self.best_model)
                return "diverged"
            self._roll_back()
            return None
        if loss < self.best_loss:
            self.best_loss = loss
            self.best_model = _clone_state(self.model)
        if self.scheduler is not None:
            self.scheduler.step(loss)
            if self.learning_rate < self.config.learning_rate_min:
                return "converged"
        return None

    def request_stop(self):
        """Ask the loop to end after the current step (what Ctrl-C does)."""
        self._stop_requested = True

    def run(self):
        """Train until converged, out of steps or interrupted; return the stop reason.

        The loop flushes denormals to zero, and Ctrl-C stops it cleanly after the current
        step (see :mod:`cvae.training.environment`).

        Returns
        -------
        stop_reason : {"converged", "max_steps", "interrupted", "diverged"}
        """
        self._stop_requested = False
        with flush_denormals_to_zero(), ctrl_c_calls(self.request_stop):
            return self._loop()

    def _loop(self):
        cfg = self.config
        self.model.train()
        progress = tqdm(
            total=cfg.max_steps, initial=self.step, disable=not (cfg.verbose and _interactive()), unit="step",
            dynamic_ncols=True,
        )
        train_sum = torch.zeros((), device=self.device)
        n_summed = 0
        started = time.perf_counter()
        self.stop_reason = "max_steps"
        try:
            while self.step < cfg.max_steps:
                if self.distributed.any(self._stop_requested, self.device):
                    self.stop_reason = "interrupted"
                    break
                train_sum += self._train_step(next(self.batches))
                n_summed += 1
                self.step += 1
                progress.update(1)
                if self.step % cfg.validation_interval == 0 or self.step == cfg.max_steps:
                    self.elapsed += time.perf_counter() - started
                    started = time.perf_counter()
                    summed = self.distributed.sum(train_sum).item()
                    reason = self._validate(summed / n_summed / self.distributed.world_size)
                    train_sum.zero_()
                    n_summed = 0
                    self._report(progress)
                    if reason is not None:
                        self.stop_reason = reason
                        break
                if cfg.checkpoint_interval and self.on_checkpoint and self.step % cfg.checkpoint_interval == 0:
                    self.on_checkpoint(self.state_dict())
        finally:
            self.elapsed += time.perf_counter() - started
            progress.close()
        return self.stop_reason

    def _report(self, progress):
        row = self.history[-1]
        fields = {
            "train": f"{row['train_loss']:.4g}",
            "valid": f"{row['validation_loss']:.4g}",
            "lr": f"{row['learning_rate']:.2g}",
        }
        if not progress.disable:
            progress.set_postfix(fields, refresh=False)
        elif self.config.verbose:
            logger.info(
                "step %d/%d %s (%.0f s)", self.step, self.config.max_steps,
                " ".join(f"{k}={v}" for k, v in fields.items()), row["elapsed_seconds"],
            )

    def restore_best(self):
        """Load the weights that had the lowest validation loss."""
        self.model.load_state_dict(self.best_model)

    def state_dict(self):
        """Everything needed to continue this run exactly: weights, optimizer, scheduler, RNG."""
        state = {
            "model": self.model.state_dict(),
            "best_model": self.best_model,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "grad_scaler": None if self._scaler is None else self._scaler.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "best_loss": self.best_loss,
            "history": self.history,
            "rollbacks": self.rollbacks,
            "stop_reason": self.stop_reason,
            "batches": self.batches.state_dict(),
            "rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return _to_cpu(state)

    def _load_optimizer(self, saved):
        try:
            self.optimizer.load_state_dict(saved)
        except ValueError:
            # Saved for parameters held in other tensors (cvae 0.1.0 kept each IAF step's
            # weights apart): keep the learning rate, restart the moment estimates.
            for group, saved_group in zip(self.optimizer.param_groups, saved["param_groups"]):
                group["lr"] = saved_group["lr"]
            logger.warning("The saved optimizer state does not fit this model's parameters; Adam restarts its "
                           "moment estimates at the saved learning rate %.3g.", self.learning_rate)

    def load_state_dict(self, state):
        """Continue the run saved by :meth:`state_dict`."""
        device = next(self.model.parameters()).device
        self.model.load_state_dict(state["best_model"])  # through the model: the keys of this version
        self.best_model = _clone_state(self.model)
        self.model.load_state_dict(state["model"])
        self._load_optimizer(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self._scaler is not None and state.get("grad_scaler"):
            self._scaler.load_state_dict(state["grad_scaler"])
        self.step = state["step"]
        self.elapsed = state["elapsed"]
        self.best_loss = state["best_loss"]
        self.history = copy.deepcopy(state["history"])
        self.rollbacks = state["rollbacks"]
        self.stop_reason = state["stop_reason"]
        self.batches.load_state_dict(
            {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in state["batches"].items()}
        )
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def _interactive():
    """True where a progress bar can redraw: a terminal, or a Jupyter kernel."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
