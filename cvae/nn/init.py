"""Weight initialization that draws from a given generator.

Every draw here takes a ``generator``: a fit initializes its model from its own, and never
reads or changes torch's default generator, which other threads may be using. (``torch.nn.init``
takes a generator only from torch 2.2; this package supports 2.1.)
"""

import math

import torch
from torch import nn

from .made import StackedMaskedLinear

__all__ = ["INITIALIZERS", "initialize_weights", "linear"]

INITIALIZERS = ("orthogonal", "truncated_normal", "lecun_normal", "default")


def _fan_in_uniform_(weight, generator):
    # nn.Linear's own scheme, kaiming_uniform_ with a=sqrt(5): uniform within 1/sqrt(fan_in),
    # computed as torch computes it, so that the same draws give the same weights.
    bound = math.sqrt(3.0) * math.sqrt(2.0 / 6) / math.sqrt(weight.shape[1])
    weight.uniform_(-bound, bound, generator=generator)


def _fan_in_uniform_bias_(bias, fan_in, generator):
    bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    bias.uniform_(-bound, bound, generator=generator)


def _truncated_normal_(weight, std, generator):
    """Normal(0, std) cut at two standard deviations, by inverting the normal's CDF."""
    edge = math.erf(2 / math.sqrt(2))  # 2 * Phi(2) - 1
    weight.uniform_(-edge, edge, generator=generator).erfinv_().mul_(std * math.sqrt(2)).clamp_(-2 * std, 2 * std)


def _orthogonal_(weight, generator):
    """Orthonormal rows (or columns, when taller than wide), from the QR of a normal draw."""
    rows, cols = weight.shape
    draw = torch.empty(rows, cols, device=weight.device).normal_(generator=generator)
    q, r = torch.linalg.qr(draw if rows >= cols else draw.T)
    q = q * torch.sign(torch.diagonal(r))  # the signs that make the result uniform over orthogonal matrices
    weight.copy_(q if rows >= cols else q.T)


_WEIGHT_INITS = {
    "orthogonal": _orthogonal_,
    "truncated_normal": lambda w, g: _truncated_normal_(w, 0.05, g),  # TensorFlow's truncated_normal default
    "lecun_normal": lambda w, g: _truncated_normal_(w, 1 / math.sqrt(w.shape[1]), g),
    "default": _fan_in_uniform_,
}


@torch.no_grad()
def initialize_weights(module, initializer, generator=None):
    """Initialize the weights and biases of every linear layer in ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        Module whose ``nn.Linear`` and :class:`StackedMaskedLinear` sub-modules are
        initialized (the latter one flow step at a time).
    initializer : {"orthogonal", "truncated_normal", "lecun_normal", "default"}
        Scheme for the weight matrices; biases are set to zero. ``"default"`` is PyTorch's
        own ``nn.Linear`` scheme, biases included: uniform within ``1/sqrt(fan_in)``.
    generator : torch.Generator, default=None
        Where the draws come from; ``None`` means torch's default generator.
    """
    init = _WEIGHT_INITS[initializer]
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            init(layer.weight, generator)
        elif isinstance(layer, StackedMaskedLinear):
            for weight in layer.weight:
                init(weight, generator)
        else:
            continue
        if layer.bias is None:
            continue
        if initializer == "default":
            _fan_in_uniform_bias_(layer.bias, layer.in_features, generator)
        else:
            nn.init.zeros_(layer.bias)


def linear(in_features, out_features, bias=True, generator=None):
    """An ``nn.Linear`` with PyTorch's initialization drawn from ``generator``."""
    layer = nn.utils.skip_init(nn.Linear, in_features, out_features, bias=bias)
    initialize_weights(layer, "default", generator)
    return layer
