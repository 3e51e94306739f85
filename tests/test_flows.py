"""Inverse autoregressive flows (cvae.nn.flows): autoregressive steps, log-determinants, the hand-written
backward against autograd."""

import math
from unittest import mock

import pytest
import torch
from torch.autograd.functional import jacobian

from cvae.nn import VAE, InverseAutoregressiveFlow


def _vae(n_flows=0, likelihood="gaussian", n_features=6, n_latent=3):
    torch.manual_seed(0)
    return VAE(n_features, n_latent, [16, 8], torch.zeros(n_features), torch.ones(n_features), likelihood, n_flows)


def _random_flow(n_latent, n_steps, hidden_sizes, n_context):
    torch.manual_seed(0)
    flow = InverseAutoregressiveFlow(n_latent, n_steps, hidden_sizes, n_context)
    for p in flow.parameters():  # non-trivial weights
        torch.nn.init.normal_(p, std=0.5)
    return flow


@pytest.mark.parametrize("hidden_sizes", [[12], [12, 12]])
def test_flow_step_is_autoregressive_with_diagonal_sigma(hidden_sizes):
    flow = _random_flow(5, 1, hidden_sizes, n_context=3)
    z, h = torch.randn(5), torch.randn(1, 3)
    jac = jacobian(lambda v: flow(v[None], h)[0][0], z)  # (5 outputs, 5 inputs)
    assert torch.all(jac.triu(diagonal=1) == 0)  # output i sees only inputs before i
    assert torch.all(jac.tril(diagonal=-1)[1:, :1] != 0)  # every later output sees the first input
    assert torch.all((jac.diagonal() > 0) & (jac.diagonal() < 1))
    assert torch.allclose(jac.diagonal().log().sum(), flow(z[None], h)[1][0], atol=1e-5)


def test_flow_context_changes_the_outputs():
    flow = _random_flow(3, 2, [8], n_context=4)
    z, h = torch.randn(1, 3), torch.randn(1, 4)
    jac = jacobian(lambda c: flow(z, c)[0], h)  # (1, 3, 1, 4)
    assert torch.all(jac[0, :, 0].abs().sum(dim=1) > 0)


@pytest.mark.parametrize("n_steps", [1, 2, 5])
def test_iaf_log_det_matches_autograd_jacobian(n_steps):
    flow = _random_flow(4, n_steps, [16, 16], n_context=3)
    z, h = torch.randn(4), torch.randn(1, 3)
    jac = jacobian(lambda v: flow(v[None], h)[0][0], z)
    _, log_det = flow(z[None], h)
    sign, logabs = torch.linalg.slogdet(jac)
    assert sign > 0
    assert torch.allclose(log_det[0], logabs, atol=1e-5)


@pytest.mark.parametrize("n_context, hidden_sizes", [(3, [6, 6]), (0, [6]), (3, [6, 5, 6])])
def test_iaf_hand_written_backward_matches_autograd(n_context, hidden_sizes):
    from cvae.nn import flows

    flow = _random_flow(3, 4, hidden_sizes, n_context).double()
    z, context = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, n_context, dtype=torch.float64)
    z_weight, det_weight = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, dtype=torch.float64)

    def gradients(run):
        params = [z.requires_grad_(), *flow.parameters()]
        z_k, log_det = run()
        grads = torch.autograd.grad((z_weight * z_k).sum() + (det_weight * log_det).sum(), params)
        return z_k.detach(), log_det.detach(), grads

    def by_autograd():  # the same arithmetic, recorded by autograd
        with mock.patch.object(flows._IAFSteps, "apply", side_effect=lambda offset, *t: flows._iaf_steps(offset, *t)):
            return flow(z, context)

    ours, reference = gradients(lambda: flow(z, context)), gradients(by_autograd)
    torch.testing.assert_close(ours[:2], reference[:2])
    for got, expected in zip(ours[2], reference[2]):
        torch.testing.assert_close(got, expected)


def test_iaf_backward_passes_gradcheck():
    from cvae.nn.flows import _IAFSteps

    flow = _random_flow(2, 3, [4, 4], n_context=2).double()
    z, context = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    first = flow.context(context).view(3, 3, -1) + flow.first_bias
    weights = [layer.masked_weight() for layer in flow.layers]
    inputs = [t.detach().requires_grad_() for t in [z, first, *weights, flow.layers[1].bias, flow.layers[2].bias]]
    assert torch.autograd.gradcheck(lambda *t: _IAFSteps.apply(flow.scale_offset, *t), inputs)


def test_iaf_orders_alternate():
    flow = _random_flow(3, 2, [8], n_context=0)
    assert flow.orders.tolist() == [[0, 1, 2], [2, 1, 0]]
    with torch.no_grad():  # first step elementwise, so the Jacobian shows the second step's structure
        for layer in flow.layers:
            layer.weight[0] = 0
    jac = jacobian(lambda v: flow(v[None])[0][0], torch.randn(3))
    assert torch.all(jac.tril(diagonal=-1) == 0)  # reversed: output i sees only inputs after i
    assert torch.all(jac[0, 1:] != 0)


@pytest.mark.parametrize("build", ["flow", "vae"])
def test_new_flow_scales_z_by_sigmoid_of_the_offset_whatever_the_context(build):
    # The VAE re-initializes its layers after building the flow: the flow must still start here.
    flow = InverseAutoregressiveFlow(3, 2, [8, 8], 8) if build == "flow" else _vae(n_flows=2).flow
    z, h = torch.randn(4, 3), 10 * torch.randn(4, 8)
    zk, log_det = flow(z, h)
    sigma = torch.sigmoid(torch.tensor(flow.scale_offset))
    torch.testing.assert_close(zk, sigma**2 * z)
    torch.testing.assert_close(log_det, torch.full((4,), 2 * 3 * math.log(sigma)))
    flow(z, h)[0].square().sum().backward()  # the zero layer still learns
    assert flow.layers[-1].weight.grad.abs().sum() > 0


def test_flow_kl_estimate_averages_to_closed_form_without_flow_steps_effect():
    # With the flow's scales pushed to 1 (sigma -> 1), IAF is the identity and the
    # Monte Carlo KL must average to the closed form.
    vae = _vae(n_flows=1)
    vae.flow.scale_offset = 30.0
    x = torch.randn(1, 6).expand(20000, 6)
    torch.manual_seed(0)
    mc = vae(x).kl.mean()
    mu, log_var, _ = vae.encode(x[:1])
    exact = 0.5 * (mu.square() + log_var.exp() - 1 - log_var).sum()
    assert abs(mc - exact) < 0.05
