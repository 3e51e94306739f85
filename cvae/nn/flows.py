"""Inverse autoregressive flow (Kingma et al., 2016) on the approximate posterior."""

import torch
from torch import nn

from .made import MADE

__all__ = ["IAFStep", "InverseAutoregressiveFlow"]


class IAFStep(nn.Module):
    """One IAF transformation ``z' = sigma * z + (1 - sigma) * m``.

    ``m`` and ``sigma = sigmoid(s + scale_offset)`` come from a MADE over ``z`` (and the
    encoder's context), so the Jacobian is triangular with diagonal ``sigma``; the sigmoid
    keeps every scale in (0, 1), which is the numerically stable form of the paper.

    Parameters
    ----------
    n_latent : int
        Latent dimension.
    hidden_sizes : sequence of int
        Hidden widths of the MADE.
    order : torch.Tensor of shape (n_latent,)
        Autoregressive order of this step.
    n_context : int, default=0
        Size of the context vector from the encoder.
    scale_offset : float, default=1.0
        Added to ``s`` before the sigmoid so each step starts close to the identity.
    """

    def __init__(self, n_latent, hidden_sizes, order, n_context=0, scale_offset=1.0):
        super().__init__()
        self.made = MADE(n_latent, hidden_sizes, 2, order=order, n_context=n_context)
        self.scale_offset = scale_offset

    def forward(self, z, context=None):
        """Return ``(z_new, log_det)`` with ``log_det`` of shape ``(batch,)``."""
        m, s = self.made(z, context)
        log_sigma = nn.functional.logsigmoid(s + self.scale_offset)
        sigma = log_sigma.exp()
        return sigma * z + (1 - sigma) * m, log_sigma.sum(dim=1)


class InverseAutoregressiveFlow(nn.Module):
    """A chain of IAF steps whose autoregressive order reverses from step to step.

    Parameters
    ----------
    n_latent : int
        Latent dimension.
    n_steps : int
        Number of IAF steps.
    hidden_sizes : sequence of int
        Hidden widths of each step's MADE.
    n_context : int, default=0
        Size of the context vector from the encoder.
    """

    def __init__(self, n_latent, n_steps, hidden_sizes, n_context=0):
        super().__init__()
        natural = torch.arange(n_latent)
        self.steps = nn.ModuleList(
            IAFStep(n_latent, hidden_sizes, natural if k % 2 == 0 else natural.flip(0), n_context)
            for k in range(n_steps)
        )

    def forward(self, z, context=None):
        """Return ``(z_K, sum_log_det)``; ``sum_log_det`` is ``log |det dz_K/dz_0|``."""
        total = z.new_zeros(z.shape[0])
        for step in self.steps:
            z, log_det = step(z, context)
            total = total + log_det
        return z, total
