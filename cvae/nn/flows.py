"""Inverse autoregressive flow (Kingma et al., 2016) on the approximate posterior."""

import torch
from torch import nn

from .made import StackedMaskedLinear, autoregressive_masks

__all__ = ["InverseAutoregressiveFlow"]


class InverseAutoregressiveFlow(nn.Module):
    """A chain of IAF steps ``z' = sigma * z + (1 - sigma) * m`` whose order reverses each step.

    In each step ``m`` and ``sigma = sigmoid(s + scale_offset)`` come from a MADE over
    ``z`` (masked layers with ELU units; the encoder's context enters the first hidden
    layer), so the Jacobian is triangular with diagonal ``sigma``; the sigmoid keeps every
    scale in (0, 1), the numerically stable form of the paper. The steps' layers are
    stored stacked (:class:`StackedMaskedLinear`) and the context is projected for all
    steps at once, so a step is a handful of tensor operations.

    Each MADE's output layer starts at zero (:meth:`zero_output_layer`), so a new flow is
    the linear map ``z' = sigmoid(scale_offset) * z`` whatever the context: training
    starts from the Gaussian posterior rather than from a random distortion of it. With
    random output weights, 2 steps on a 2-D MNIST latent (10,000 steps) gave a test ELBO
    0.8 and 1.7 nats below no flow for seeds 0 and 1; started at zero, 0.3 and 0.6 above
    (1 thread). With the default layers the mean gain over seeds 0-3 is +1.1 nats at 2-D,
    and +0.6 over seeds 0-1 on a 10-D latent (README, section "Benchmarks").

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
    scale_offset : float, default=1.0
        Added to ``s`` before the sigmoid so each step starts close to the identity.
    """

    def __init__(self, n_latent, n_steps, hidden_sizes, n_context=0, scale_offset=1.0):
        super().__init__()
        hidden_sizes = list(hidden_sizes)
        natural = torch.arange(n_latent)
        orders = [natural if k % 2 == 0 else natural.flip(0) for k in range(n_steps)]
        self.register_buffer("orders", torch.stack(orders), persistent=False)
        step_masks = [autoregressive_masks(order, hidden_sizes, 2) for order in orders]
        self.layers = nn.ModuleList(
            StackedMaskedLinear(torch.stack([masks[i] for masks in step_masks]), bias=i > 0)
            for i in range(len(hidden_sizes) + 1)
        )
        # The first hidden layer's bias and context term of every step, from one product.
        self.first_bias = nn.Parameter(torch.zeros(n_steps, hidden_sizes[0]))
        self.context = nn.Linear(n_context, n_steps * hidden_sizes[0], bias=False) if n_context else None
        self.activation = nn.ELU()
        self.n_latent, self.n_steps, self.scale_offset = n_latent, n_steps, scale_offset
        self.zero_output_layer()

    @torch.no_grad()
    def zero_output_layer(self):
        """Zero every step's ``m`` and ``s`` weights and biases: each step becomes ``z' = sigmoid(scale_offset) * z``."""
        self.layers[-1].weight.zero_()
        self.layers[-1].bias.zero_()

    def forward(self, z, context=None):
        """Return ``(z_K, sum_log_det)``; ``sum_log_det`` is ``log |det dz_K/dz_0|``."""
        first = self.first_bias
        if self.context is not None:
            first = self.context(context).view(len(z), self.n_steps, -1) + first
        first = first.unbind(-2)
        weights = [layer.masked_weights() for layer in self.layers]
        shifted_scales = []
        for k in range(self.n_steps):
            h = torch.addmm(first[k], z, weights[0][k])
            for layer, w in zip(self.layers[1:], weights[1:]):
                h = torch.addmm(layer.bias[k], self.activation(h), w[k])
            m, s = h.float().view(len(z), 2, self.n_latent).unbind(1)  # float32 under autocast too
            s = s + self.scale_offset
            z = torch.lerp(m, z, torch.sigmoid(s))  # m + sigma * (z - m)
            shifted_scales.append(s)
        if not shifted_scales:
            return z, z.new_zeros(len(z))
        # One log-sigmoid over all steps: fewer small operations than one per step.
        return z, nn.functional.logsigmoid(torch.stack(shifted_scales)).sum(dim=(0, 2))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        _stack_per_step_weights(state_dict, prefix, self.n_steps, len(self.layers))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _stack_per_step_weights(state_dict, prefix, n_steps, n_layers):
    """Rewrite, in place, a state dict saved by cvae 0.1.0, whose flow kept one MADE per step.

    Its keys were ``steps.{k}.made.layers.{i}.{weight,bias,mask}``,
    ``steps.{k}.made.context.weight`` and ``steps.{k}.made.order``; the masks and orders
    are rebuilt from the configuration, so they are dropped.
    """
    old = f"{prefix}steps.{{k}}.made.{{name}}"
    if old.format(k=0, name="layers.0.weight") not in state_dict:
        return

    def pop_all(name):
        return [state_dict.pop(old.format(k=k, name=name)) for k in range(n_steps)]

    for i in range(n_layers):
        state_dict[f"{prefix}layers.{i}.weight"] = torch.stack(pop_all(f"layers.{i}.weight"))
        biases = torch.stack(pop_all(f"layers.{i}.bias"))
        state_dict[f"{prefix}first_bias" if i == 0 else f"{prefix}layers.{i}.bias"] = biases
        pop_all(f"layers.{i}.mask")
    if old.format(k=0, name="context.weight") in state_dict:
        state_dict[f"{prefix}context.weight"] = torch.cat(pop_all("context.weight"))
    pop_all("order")
