"""The typed plan of a training run: how it trains, every ``"auto"`` resolved.

The estimator's parameters describe two things: what the model is (the architecture,
likelihood, normalization and seed, recorded in :class:`cvae.spec.RunSpec`) and how a fit
trains it. A :class:`TrainingPlan` is the second, built once per fit from the parameters
with the values the fit resolved (the step budget, the neighbour term's weight, and for
an update its one-pass schedule); the training run, its callbacks and what it stores read
the plan, not the parameter dict.
"""

from dataclasses import dataclass, fields
from typing import Optional

import numpy as np

__all__ = ["TrainingPlan"]


@dataclass(frozen=True)
class TrainingPlan:
    """How one run trains (the estimator's parameters of the same names, documented there),
    with ``max_steps`` and ``neighbor_weight`` numbers; ``resolved`` names the fields whose
    values the fit chose rather than took from the parameters, saved with the run."""

    max_steps: int
    neighbor_weight: float
    learning_rate: str
    learning_rate_init: float
    learning_rate_min: float
    learning_rate_factor: float
    patience: int
    tol: float
    n_iter_no_change: Optional[int]
    validation_interval: int
    checkpoint_interval: int
    batch_size: int
    eval_batch_size: int
    beta: float
    kl_warmup_steps: int
    free_bits: float
    reconstruction_fraction: float
    n_neighbors: int
    neighbor_samples: int
    neighbor_objective: str
    target_weight: float
    classifier_weight: float
    landmark_weight: float
    freeze_reference: bool
    store_rows: bool
    placement: str
    precision: str
    compile: bool
    n_jobs: Optional[int]
    verbose: bool
    tensorboard: bool
    logdir: Optional[str] = None
    resolved: tuple = ()

    @classmethod
    def from_params(cls, params, **resolved):
        """The plan of the estimator parameters ``params`` (a ``get_params()`` dict) with the
        values a fit resolved (``max_steps`` and ``neighbor_weight`` at least) in place."""
        names = [f.name for f in fields(cls) if f.name != "resolved"]
        values = {name: resolved.get(name, params.get(name)) for name in names}
        # NumPy scalars (np.arange grids) as Python numbers, for the checkpoint
        values = {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}
        return cls(**values, resolved=tuple(sorted(resolved)))

    def resolved_values(self):
        """``{name: value}`` of the fields the fit resolved, as saved in the checkpoint."""
        return {name: getattr(self, name) for name in self.resolved}
