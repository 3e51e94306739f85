"""Multi-layer perceptrons whose dropout draws from a given generator."""

import torch
from torch import nn

from .init import linear

__all__ = ["ACTIVATIONS", "MLP", "Dropout"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
}


class Dropout(nn.Module):
    """``nn.Dropout`` whose mask comes from the generator passed to :meth:`forward`.

    ``nn.Dropout`` draws from torch's default generator, which every thread of the process
    shares; a fit passes its own, so that what other threads draw neither changes the fit
    nor is changed by it.
    """

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x, generator=None):
        if not self.training or self.p == 0:
            return x
        keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=generator)
        return x * keep / (1 - self.p)

    def extra_repr(self):
        return f"p={self.p}"


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
    generator : torch.Generator, default=None
        Where the initial weights are drawn from (PyTorch's scheme for ``nn.Linear``);
        ``None`` means torch's default generator.
    """

    def __init__(self, in_features, hidden_sizes, dropout=0.0, activation="relu", generator=None):
        layers = []
        width = in_features
        for size in hidden_sizes:
            layers += [linear(width, size, generator=generator), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(Dropout(dropout))
            width = size
        super().__init__(*layers)
        self.out_features = width

    def forward(self, x, generator=None):
        """The stack applied to ``x``; dropout masks are drawn from ``generator``
        (torch's default generator when ``None``)."""
        for layer in self:
            x = layer(x, generator) if isinstance(layer, Dropout) else layer(x)
        return x
