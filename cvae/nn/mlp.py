"""Multi-layer perceptrons and weight initialization."""

import math

import torch
from torch import nn

from .made import StackedMaskedLinear

__all__ = ["ACTIVATIONS", "INITIALIZERS", "MLP", "initialize_weights"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}

INITIALIZERS = ("orthogonal", "truncated_normal", "lecun_normal", "default")


class MLP(nn.Sequential):
    """Stack of ``Linear -> activation -> Dropout`` blocks.

    Parameters
    ----------
    in_features : int
        Size of each input row.
    hidden_sizes : sequence of int
        Width of each hidden layer, in order.
    dropout : float, default=0.0
        Probability of zeroing a hidden unit during training.
    activation : {"relu", "elu", "gelu", "tanh"}, default="relu"
        Non-linearity after each linear layer.
    """

    def __init__(self, in_features, hidden_sizes, dropout=0.0, activation="relu"):
        layers = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        super().__init__(*layers)
        self.out_features = width


def _lecun_normal_(weight):
    fan_in = weight.shape[1]
    nn.init.trunc_normal_(weight, std=1.0 / math.sqrt(fan_in), a=-2 / math.sqrt(fan_in), b=2 / math.sqrt(fan_in))


def _truncated_normal_(weight):
    # TensorFlow's truncated_normal_initializer default: std 0.05, cut at two standard deviations.
    nn.init.trunc_normal_(weight, std=0.05, a=-0.1, b=0.1)


_WEIGHT_INITS = {
    "orthogonal": nn.init.orthogonal_,
    "truncated_normal": _truncated_normal_,
    "lecun_normal": _lecun_normal_,
}


@torch.no_grad()
def initialize_weights(module, initializer):
    """Re-initialize the weights of every linear layer in ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        Module whose ``nn.Linear`` and :class:`StackedMaskedLinear` sub-modules are
        initialized (the latter one flow step at a time).
    initializer : {"orthogonal", "truncated_normal", "lecun_normal", "default"}
        Scheme for the weight matrices; biases are set to zero. ``"default"`` keeps
        PyTorch's own initialization.
    """
    if initializer == "default":
        return
    init = _WEIGHT_INITS[initializer]
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            init(layer.weight)
        elif isinstance(layer, StackedMaskedLinear):
            for weight in layer.weight:
                init(weight)
        else:
            continue
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
