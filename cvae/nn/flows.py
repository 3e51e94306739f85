"""Inverse autoregressive flow (Kingma et al., 2016) on the approximate posterior."""

import torch
from torch import nn

from .init import initialize_weights, linear
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

    The steps run in one autograd node with a hand-written backward (:class:`_IAFSteps`):
    the weight gradients of all steps come from one batched product per layer, in less time
    than autograd over the same operations (benchmarks/README.md, "How the defaults were
    chosen").

    Each MADE's output layer starts at zero (:meth:`zero_output_layer`), so a new flow is
    the linear map ``z' = sigmoid(scale_offset) * z`` whatever the context: training
    starts from the Gaussian posterior rather than from a random distortion of it, which
    measurably raised the test ELBO (benchmarks/README.md).

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
    generator : torch.Generator, default=None
        Where the initial weights are drawn from (PyTorch's scheme for linear layers);
        ``None`` means torch's default generator.
    """

    def __init__(self, n_latent, n_steps, hidden_sizes, n_context=0, scale_offset=1.0, generator=None):
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
        self.context = linear(n_context, n_steps * hidden_sizes[0], bias=False, generator=generator) if n_context \
            else None
        self.n_latent, self.n_steps, self.scale_offset = n_latent, n_steps, scale_offset
        # disable() imports torch._dynamo (about a second): only a model with a flow pays it
        self._apply_steps = torch.compiler.disable(_apply_steps)
        initialize_weights(self.layers, "default", generator)
        self.zero_output_layer()

    @torch.no_grad()
    def zero_output_layer(self):
        """Zero every step's ``m`` and ``s`` weights and biases.

        Each step then becomes ``z' = sigmoid(scale_offset) * z``.
        """
        self.layers[-1].weight.zero_()
        self.layers[-1].bias.zero_()

    def forward(self, z, context=None):
        """Return ``(z_K, sum_log_det)``; ``sum_log_det`` is ``log |det dz_K/dz_0|``."""
        if self.n_steps == 0:
            return z, z.new_zeros(z.shape[0])
        first = self.first_bias
        if self.context is not None:
            # shape[0], not len(z): a symbolic batch size under torch.export
            first = self.context(context).view(z.shape[0], self.n_steps, first.shape[-1]) + first  # no -1: 0 rows
        weights = [layer.masked_weight() for layer in self.layers]
        biases = [layer.bias for layer in self.layers[1:]]
        # In z's precision (float32 under mixed-precision autocast too: the flow is small and
        # its scales are fine).
        with torch.autocast(z.device.type, enabled=False):
            tensors = [t.to(z.dtype) for t in [z, first, *weights, *biases]]
            if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
                return self._apply_steps(self.scale_offset, *tensors)
            return _iaf_steps(self.scale_offset, *tensors)[:2]


def _apply_steps(scale_offset, *tensors):
    """:class:`_IAFSteps`, which a flow runs outside ``torch.compile``'s graphs
    (``torch.compiler.disable``): dynamo (torch 2.13) fails to trace the function a second
    time in one forward pass, as the neighbour term needs."""
    return _IAFSteps.apply(scale_offset, *tensors)


def _iaf_steps(scale_offset, z, first, *layer_tensors, keep=False):
    """The flow steps' arithmetic; with ``keep``, also what :class:`_IAFSteps` needs for backward.

    ``layer_tensors`` are the masked weights ``(n_steps, in, out)`` of every layer, then the
    biases ``(n_steps, out)`` of every layer but the first, whose bias is ``first``:
    ``(n_steps, hidden)`` or, with a context, ``(batch, n_steps, hidden)``.
    """
    n_layers = (len(layer_tensors) + 1) // 2
    # Unbound once: indexing a step's slice in the loop would be one more operation each time.
    weights = [w.unbind(0) for w in layer_tensors[:n_layers]]
    biases = [first.unbind(-2)] + [b.unbind(0) for b in layer_tensors[n_layers:]]
    n_latent = z.shape[1]
    layer_inputs = [[] for _ in weights]
    scales, gaps, shifted_scales = [], [], []
    for k in range(len(weights[0])):
        h = z
        for i, weight in enumerate(weights):
            layer_inputs[i].append(h)
            h = torch.addmm(biases[i][k], h, weight[k])
            if i < n_layers - 1:
                h = nn.functional.elu(h)
        m, s = h[:, :n_latent], h[:, n_latent:] + scale_offset
        sigma, gap = torch.sigmoid(s), z - m
        z = torch.addcmul(m, sigma, gap)  # m + sigma * (z - m)
        scales.append(sigma)
        gaps.append(gap)
        shifted_scales.append(s)
    # One log-sigmoid over all steps: fewer small operations than one per step.
    log_det = nn.functional.logsigmoid(torch.stack(shifted_scales)).sum(dim=(0, 2))
    return (z, log_det, layer_inputs, scales, gaps) if keep else (z, log_det)


class _IAFSteps(torch.autograd.Function):
    """The IAF steps as one autograd node: forward as :func:`_iaf_steps`, backward by hand.

    Going back through the steps needs, per step, the gradient of each layer's input (one
    product per layer and the ELU derivatives); the weight and bias gradients of all steps
    are then one batched product and one sum per layer, instead of one of each per step
    and layer. Each step ``z' = m + sigma * (z - m)`` with ``sigma = sigmoid(s)`` adds
    ``sum log sigma`` to the log-determinant, so ``d log_det / ds = 1 - sigma``.
    """

    @staticmethod
    def forward(ctx, scale_offset, z, first, *layer_tensors):
        z_k, log_det, layer_inputs, scales, gaps = _iaf_steps(scale_offset, z, first, *layer_tensors, keep=True)
        n_layers = (len(layer_tensors) + 1) // 2
        ctx.n_layers, ctx.n_steps, ctx.first_shape = n_layers, len(scales), first.shape
        ctx.save_for_backward(
            *layer_tensors[:n_layers], *[torch.stack(inputs) for inputs in layer_inputs],
            torch.stack(scales), torch.stack(gaps),
        )
        return z_k, log_det

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_z, grad_log_det):
        n_layers = ctx.n_layers
        saved = ctx.saved_tensors
        weights = [w.transpose(1, 2).unbind(0) for w in saved[:n_layers]]
        layer_inputs = [inputs.unbind(0) for inputs in saved[n_layers : 2 * n_layers]]
        scales, gaps = (t.unbind(0) for t in saved[2 * n_layers :])
        grad_log_det = grad_log_det[:, None]
        grad_pre = [[] for _ in weights]  # gradient of each layer's output before its ELU
        for k in reversed(range(ctx.n_steps)):
            sigma = scales[k]
            grad_z_in = grad_z * sigma
            grad_m = grad_z - grad_z_in
            grad_s = torch.addcmul(grad_log_det, grad_z * gaps[k], sigma).mul_(1 - sigma)
            grad = torch.cat([grad_m, grad_s], dim=1)
            for i in reversed(range(n_layers)):
                grad_pre[i].append(grad)
                if i > 0:
                    grad = torch.ops.aten.elu_backward(grad @ weights[i][k], 1.0, 1, 1, True, layer_inputs[i][k])
            grad_z = torch.addmm(grad_z_in, grad, weights[0][k])
        grad_pre = [torch.stack(grads[::-1]) for grads in grad_pre]  # (n_steps, batch, out)
        stacked_inputs = saved[n_layers : 2 * n_layers]
        grad_weights = [torch.bmm(inputs.transpose(1, 2), grads) for inputs, grads in zip(stacked_inputs, grad_pre)]
        grad_biases = [grads.sum(dim=1) for grads in grad_pre[1:]]
        grad_first = grad_pre[0].transpose(0, 1) if len(ctx.first_shape) == 3 else grad_pre[0].sum(dim=1)
        return None, grad_z, grad_first, *grad_weights, *grad_biases
