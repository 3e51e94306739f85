"""Layers (cvae.nn.mlp): the stack's shape, and dropout drawn from the generator it is given."""

import pytest
import torch

from cvae import _random
from cvae.nn.mlp import MLP, Dropout


def test_the_stack_has_a_linear_layer_and_activation_per_width():
    mlp = MLP(5, [8, 3], activation="tanh", generator=_random.generator("init", 0))
    assert [type(layer).__name__ for layer in mlp] == ["Linear", "Tanh", "Linear", "Tanh"]
    assert mlp.out_features == 3 and mlp(torch.randn(4, 5)).shape == (4, 3)
    assert MLP(5, []).out_features == 5  # no hidden layer: the rows as they are
    # the same generator gives the same weights; another, others
    same = MLP(5, [8, 3], activation="tanh", generator=_random.generator("init", 0))
    other = MLP(5, [8, 3], activation="tanh", generator=_random.generator("init", 1))
    assert torch.equal(mlp[0].weight, same[0].weight) and not torch.equal(mlp[0].weight, other[0].weight)


def test_dropout_draws_its_mask_from_the_given_generator_and_keeps_the_mean():
    dropout = Dropout(0.25).train()
    x = torch.ones(20_000)
    first = dropout(x, _random.generator("noise", 0, 0, 0))
    assert torch.equal(first, dropout(x, _random.generator("noise", 0, 0, 0)))
    assert not torch.equal(first, dropout(x, _random.generator("noise", 0, 0, 1)))
    assert first.unique().tolist() == [0.0, pytest.approx(4 / 3)]
    assert float(first.mean()) == pytest.approx(1.0, abs=0.02)  # kept units scaled by 1 / (1 - p)
    # what other code draws from torch's default generator changes nothing
    torch.manual_seed(123)
    assert torch.equal(first, dropout(x, _random.generator("noise", 0, 0, 0)))
    assert torch.equal(dropout.eval()(x, None), x)  # off outside training


def test_the_stack_passes_its_generator_to_every_dropout():
    mlp = MLP(6, [50, 50], dropout=0.5, generator=_random.generator("init", 0)).train()
    x = torch.randn(3, 6)
    a = mlp(x, _random.generator("noise", 0, 0, 0))
    assert torch.equal(a, mlp(x, _random.generator("noise", 0, 0, 0)))
    assert not torch.equal(a, mlp(x, _random.generator("noise", 0, 0, 1)))
