"""Masked autoencoder for distribution estimation (Germain et al., 2015)."""

import torch
from torch import nn

__all__ = ["MADE", "MaskedLinear", "autoregressive_masks"]


class MaskedLinear(nn.Linear):
    """Linear layer whose weight is multiplied by a fixed binary mask.

    Parameters
    ----------
    in_features, out_features : int
        Layer sizes.
    mask : torch.Tensor of shape (out_features, in_features)
        Connectivity; stored as a buffer so it moves and saves with the module.
    """

    def __init__(self, in_features, out_features, mask):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


def autoregressive_masks(order, hidden_sizes, n_outputs_per_input):
    """Masks that make output ``i`` depend only on inputs earlier than ``i`` in ``order``.

    Parameters
    ----------
    order : torch.Tensor of shape (n_inputs,)
        A permutation of ``0..n_inputs-1``: ``order[i]`` is the position of input ``i``.
    hidden_sizes : sequence of int
        Width of each hidden layer.
    n_outputs_per_input : int
        Number of output blocks; each block has one unit per input.

    Returns
    -------
    masks : list of torch.Tensor
        One ``(out, in)`` mask per layer, the last one for the output layer.
    """
    n_inputs = len(order)
    degrees = [order]
    for size in hidden_sizes:
        # Hidden degrees cycle through 0..n_inputs-2 so every unit connects to some input
        # and can reach some output.
        degrees.append(torch.arange(size) % max(n_inputs - 1, 1))
    masks = [(d_out[:, None] >= d_in[None, :]) for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    output_degrees = order.repeat(n_outputs_per_input)
    masks.append(output_degrees[:, None] > degrees[-1][None, :])
    return [m.float() for m in masks]


class MADE(nn.Module):
    """Autoregressive network: output block ``k`` at input ``i`` sees only earlier inputs.

    Parameters
    ----------
    n_inputs : int
        Dimension of the autoregressive input.
    hidden_sizes : sequence of int
        Widths of the masked hidden layers.
    n_outputs_per_input : int
        Number of outputs produced for each input (e.g. 2 for shift and scale).
    order : torch.Tensor of shape (n_inputs,), default=None
        Autoregressive order; ``None`` means the natural order.
    n_context : int, default=0
        Size of an unmasked context vector added to the first hidden layer.
    """

    def __init__(self, n_inputs, hidden_sizes, n_outputs_per_input, order=None, n_context=0):
        super().__init__()
        if order is None:
            order = torch.arange(n_inputs)
        self.n_inputs = n_inputs
        self.n_outputs_per_input = n_outputs_per_input
        self.register_buffer("order", order.clone())
        masks = autoregressive_masks(order, hidden_sizes, n_outputs_per_input)
        sizes = [n_inputs, *hidden_sizes, n_inputs * n_outputs_per_input]
        self.layers = nn.ModuleList(
            MaskedLinear(n_in, n_out, mask) for n_in, n_out, mask in zip(sizes[:-1], sizes[1:], masks)
        )
        self.context = nn.Linear(n_context, hidden_sizes[0], bias=False) if n_context else None
        self.activation = nn.ELU()

    def forward(self, x, context=None):
        """Return a tensor of shape ``(n_outputs_per_input, batch, n_inputs)``."""
        h = self.layers[0](x)
        if self.context is not None:
            h = h + self.context(context)
        for layer in self.layers[1:]:
            h = layer(self.activation(h))
        return h.view(x.shape[0], self.n_outputs_per_input, self.n_inputs).transpose(0, 1)
