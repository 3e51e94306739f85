"""Autoregressive masks (MADE, Germain et al., 2015) and masked layers stacked over flow steps."""

import torch
from torch import nn

__all__ = ["StackedMaskedLinear", "autoregressive_masks"]


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


class StackedMaskedLinear(nn.Module):
    """The same masked linear layer in each of ``n_stacked`` flow steps, stored as one tensor.

    A chain of small masked layers costs more in per-operation overhead than in arithmetic
    (on a CPU, about 10 microseconds a tensor operation against a fraction of that for a
    64-unit product). Stacking the steps' weights lets one product apply every step's mask.

    Parameters
    ----------
    masks : torch.Tensor of shape (n_stacked, out_features, in_features)
        Connectivity of each step; a buffer rebuilt by the owner, so not saved.
    bias : bool, default=True
        Whether the layer has a bias (the first layer of a flow step takes its bias from
        the context projection instead).
    """

    def __init__(self, masks, bias=True):
        super().__init__()
        n_stacked, out_features, in_features = masks.shape
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("mask", masks.float(), persistent=False)
        # Left uninitialized: cvae.nn.init.initialize_weights sets them, from the owner's generator.
        self.weight = nn.Parameter(torch.empty(n_stacked, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(n_stacked, out_features)) if bias else None

    def masked_weight(self):
        """The steps' masked weights transposed to ``(n_stacked, in, out)``, as ``h @ w`` takes them."""
        return (self.weight * self.mask).transpose(1, 2)
