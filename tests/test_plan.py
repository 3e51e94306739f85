"""The typed plan of a run (cvae.training.plan)."""

import numpy as np
import pytest

from cvae import CompressionVAE


def test_the_plan_holds_the_resolved_values_and_plain_numbers():
    from cvae.training.plan import TrainingPlan

    params = CompressionVAE(batch_size=np.int64(64), learning_rate_init=np.float32(1e-3)).get_params()
    plan = TrainingPlan.from_params(params, max_steps=120, neighbor_weight=0.4)
    assert (plan.max_steps, plan.neighbor_weight, plan.batch_size) == (120, 0.4, 64)
    assert type(plan.batch_size) is int and type(plan.learning_rate_init) is float  # NumPy scalars as numbers
    assert plan.resolved_values() == {"max_steps": 120, "neighbor_weight": 0.4}  # what the checkpoint records
    with pytest.raises(Exception):  # frozen: nothing below the estimator changes how a run trains
        plan.max_steps = 1
