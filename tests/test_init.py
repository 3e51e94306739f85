"""Weight initialization (cvae.nn.init): what each scheme draws, from the given generator."""

import inspect
import math

import pytest
import torch

from cvae.nn import initialize_weights


def test_orthogonal_initializer_gives_orthonormal_rows():
    layer = torch.nn.Linear(64, 16)
    initialize_weights(layer, "orthogonal")
    assert torch.allclose(layer.weight @ layer.weight.T, torch.eye(16), atol=1e-5)
    assert torch.all(layer.bias == 0)


@pytest.mark.parametrize("shape", [(16, 64), (64, 16)])
def test_orthogonal_and_default_initializers_draw_what_torch_nn_init_draws(shape):
    if "generator" not in inspect.signature(torch.nn.init.orthogonal_).parameters:
        pytest.skip("torch.nn.init takes a generator from torch 2.2")
    layer, reference = torch.nn.Linear(*shape[::-1]), torch.empty(shape)
    initialize_weights(layer, "orthogonal", torch.Generator().manual_seed(5))
    torch.nn.init.orthogonal_(reference, generator=torch.Generator().manual_seed(5))
    assert torch.equal(layer.weight, reference)
    initialize_weights(layer, "default", torch.Generator().manual_seed(6))
    torch.nn.init.kaiming_uniform_(reference, a=math.sqrt(5), generator=torch.Generator().manual_seed(6))
    assert torch.equal(layer.weight, reference)


@pytest.mark.parametrize("name, bound", [("truncated_normal", 0.1), ("lecun_normal", 2 / math.sqrt(400))])
def test_truncated_initializers_respect_their_bounds(name, bound):
    layer = torch.nn.Linear(400, 300)
    initialize_weights(layer, name)
    assert layer.weight.abs().max() <= bound + 1e-7
    if name == "lecun_normal":  # std of a normal truncated at 2 sigma is 0.88 sigma
        assert abs(layer.weight.std().item() - 0.88 / math.sqrt(400)) < 0.005


def test_default_initializer_draws_pytorch_weights_from_the_given_generator():
    torch.manual_seed(0)
    pytorch = torch.nn.Linear(10, 5)
    layer = torch.nn.Linear(10, 5)
    state = torch.get_rng_state()
    initialize_weights(layer, "default", torch.Generator().manual_seed(0))
    assert torch.equal(layer.weight, pytorch.weight) and torch.equal(layer.bias, pytorch.bias)
    assert torch.equal(torch.get_rng_state(), state)
