"""Math of the torch building blocks: KL, masks, flow log-determinants, likelihoods."""

import inspect
import math
from unittest import mock

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from cvae.nn import VAE, BernoulliLikelihood, GaussianLikelihood, InverseAutoregressiveFlow, initialize_weights
from cvae.nn.made import autoregressive_masks
from cvae.nn.vae import LossSettings, default_hidden_sizes


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


def test_masks_connect_every_output_to_all_earlier_inputs():
    order = torch.tensor([1, 0, 2])
    masks = autoregressive_masks(order, [4, 4], 1)
    reach = masks[0]
    for m in masks[1:]:
        reach = (m @ reach).clamp(max=1)
    assert torch.equal(reach, (order[:, None] > order[None, :]).float())


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


def test_closed_form_kl_matches_torch_distributions():
    vae = _vae()
    x = torch.randn(7, 6)
    mu, log_var, _ = vae.encode(x)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, (0.5 * log_var).exp()), torch.distributions.Normal(0.0, 1.0)
    ).sum(1)
    assert torch.allclose(vae(x).kl, expected, atol=1e-5)


def test_flow_kl_is_log_q_of_transformed_sample_minus_log_prior():
    vae = _vae(n_flows=2)
    x = torch.randn(5, 6)
    torch.manual_seed(1)
    out = vae(x)
    torch.manual_seed(1)
    mu, log_var, h = vae.encode(x)
    z0 = mu + torch.randn_like(mu) * (0.5 * log_var).exp()
    zk, log_det = vae.flow(z0, h)
    log_q0 = torch.distributions.Normal(mu, (0.5 * log_var).exp()).log_prob(z0).sum(1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(zk).sum(1)
    assert torch.allclose(out.z, zk)
    assert torch.allclose(out.kl, log_q0 - log_det - log_p, atol=1e-4)


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


def test_gaussian_log_prob_is_density_of_raw_data():
    loc, scale = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([2.0, 0.5, 3.0])
    lik = GaussianLikelihood(loc, scale)
    with torch.no_grad():
        lik.raw_log_var.copy_(torch.tensor([-1.0, 0.0, 2.0]))
    mean = torch.randn(4, 3)
    x = torch.randn(4, 3) * 3
    std = scale * (0.5 * lik.log_var).exp()
    expected = torch.distributions.Normal(loc + scale * mean, std).log_prob(x).sum(1)
    assert torch.allclose(lik.log_prob(mean, x), expected, atol=1e-5)
    assert torch.allclose(lik.mean(mean), loc + scale * mean)


def test_gaussian_variance_is_learned_per_feature_and_bounded_below():
    lik = GaussianLikelihood(torch.zeros(2), torch.ones(2), min_log_var=math.log(1e-3))
    assert [name for name, _ in lik.named_parameters()] == ["raw_log_var"]
    with torch.no_grad():
        lik.raw_log_var.fill_(-1e6)  # driven to -inf, as a constant feature would push it
    assert torch.all(lik.log_var >= math.log(1e-3))
    log_p = lik.log_prob(torch.zeros(1, 2), torch.zeros(1, 2))  # perfect mean
    assert torch.isfinite(log_p).all()
    assert log_p.item() == pytest.approx(-2 * 0.5 * (math.log(2 * math.pi) + math.log(1e-3)), abs=1e-4)


def test_normalization_statistics():
    from cvae.data.preprocessing import normalization_statistics

    X = np.array([[0.0, 1.0, 5.0], [2.0, 3.0, 5.0], [4.0, 5.0, 5.0]])
    loc, scale = normalization_statistics(X, "feature")
    np.testing.assert_allclose(loc, [2, 3, 5])
    np.testing.assert_allclose(scale, [np.sqrt(8 / 3), np.sqrt(8 / 3), 1.0], rtol=1e-6)
    loc, scale = normalization_statistics(X, "global")
    np.testing.assert_allclose(scale, np.full(3, np.sqrt(np.mean([8 / 3, 8 / 3, 0.0]))), rtol=1e-6)
    loc, scale = normalization_statistics(X, "none")
    assert np.all(loc == 0) and np.all(scale == 1)
    assert np.all(normalization_statistics(np.ones((4, 2)), "global")[1] == 1)


def test_bernoulli_log_prob_matches_torch_distributions():
    lik = BernoulliLikelihood(torch.zeros(5), torch.ones(5))
    logits = torch.randn(3, 5)
    x = torch.randint(0, 2, (3, 5)).float()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(1)
    assert torch.allclose(lik.log_prob(logits, x), expected, atol=1e-6)
    assert torch.allclose(lik.mean(logits), torch.sigmoid(logits))


def test_elbo_is_log_likelihood_minus_kl_and_loss_uses_beta():
    vae = _vae()
    x = torch.randn(8, 6)
    torch.manual_seed(0)
    out = vae(x, LossSettings(beta=0.5))
    assert torch.allclose(out.elbo, out.log_likelihood - out.kl)
    assert torch.allclose(out.loss, (0.5 * out.kl - out.log_likelihood).mean())


@pytest.mark.parametrize("n_flows", [0, 2])
def test_mean_elbo_averages_forward_passes_with_the_given_draws(n_flows):
    vae = _vae(n_flows=n_flows).eval()
    x, draws = torch.randn(5, 6), torch.randn(3, 3)
    expected = torch.stack([vae(x, eps=eps.expand(5, 3)).elbo for eps in draws]).mean(0)
    assert torch.allclose(vae.mean_elbo(x, draws), expected, atol=1e-5)


def test_embed_is_deterministic_and_uses_flow_at_zero_noise():
    vae = _vae(n_flows=2).eval()
    x = torch.randn(4, 6)
    mu, _, h = vae.encode(x)
    assert torch.equal(vae.embed(x), vae.embed(x))
    assert torch.allclose(vae.embed(x), vae.flow(mu, h)[0])


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


@pytest.mark.parametrize("n_flows", [0, 2])
def test_a_model_built_from_a_generator_draws_nothing_from_torchs_default_one(n_flows):
    state = torch.get_rng_state()
    one = VAE(6, 2, [8], torch.zeros(6), torch.ones(6), n_flows=n_flows, dropout=0.2,
              generator=torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), state)
    other = VAE(6, 2, [8], torch.zeros(6), torch.ones(6), n_flows=n_flows, dropout=0.2,
                generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), other.state_dict().values()))
    x = torch.randn(5, 6)
    state = torch.get_rng_state()
    outs = [model(x, generator=torch.Generator().manual_seed(1)) for model in (one, other)]  # noise and dropout
    assert torch.equal(outs[0].loss, outs[1].loss)
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.equal(one(x, generator=torch.Generator().manual_seed(2)).loss, outs[0].loss)


@pytest.mark.parametrize(
    "n_features, n_components, neighbors, expected",
    [(784, 2, False, [512, 256, 128]), (784, 10, False, [512, 256, 128]), (64, 2, False, [128, 64, 32]),
     (255, 2, False, [128, 64, 32]), (256, 2, False, [256, 128, 64]), (3, 2, False, [128, 64, 32]),
     (10**6, 2, False, [1024, 512, 256]), (100, 100, False, [512, 512, 512]), (784, 50, False, [512, 256, 256]),
     (64, 2, True, [256, 128, 64]), (784, 2, True, [512, 256, 128])],
)
def test_default_hidden_sizes_rule(n_features, n_components, neighbors, expected):
    assert default_hidden_sizes(n_features, n_components, neighbors) == expected


def _log_marginal_by_quadrature(model, x, half_width=10.0, n_points=20001):
    """log p(x) = log of the integral of p(x | z) p(z) over a 1-D latent, on a fine grid."""
    z = torch.linspace(-half_width, half_width, n_points, dtype=torch.float64)[:, None]
    params = model.decode(z)
    log_joint = torch.stack([model.likelihood.log_prob(params, row.expand(len(z), -1)) for row in x])
    log_joint = log_joint - 0.5 * (math.log(2 * math.pi) + z[:, 0].square())
    return torch.logsumexp(log_joint, dim=1) + math.log(2 * half_width / (n_points - 1))


@torch.no_grad()
def test_importance_weighted_bound_converges_to_the_log_likelihood():
    torch.manual_seed(0)
    model = VAE(4, 1, [16], torch.zeros(4), torch.ones(4), "gaussian").double().eval()
    x = torch.randn(3, 4, dtype=torch.float64)
    log_px = _log_marginal_by_quadrature(model, x)
    draws = torch.randn(20000, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    elbo = model.mean_elbo(x, draws[:2000])
    iwae = model.importance_weighted_bound(x, draws)
    torch.testing.assert_close(iwae, log_px, atol=0.02, rtol=0)
    assert torch.all(elbo < log_px - 0.03)  # the ELBO is a strictly looser bound here


@torch.no_grad()
@pytest.mark.parametrize("n_flows", [0, 2])
def test_importance_weighted_bound_is_log_mean_of_the_weights(n_flows):
    model = _vae(n_flows).eval()
    x = torch.randn(5, 6)
    draws = torch.randn(7, 3, generator=torch.Generator().manual_seed(2))
    mu, log_var, context = model.encode(x)
    log_weights = torch.stack([model._log_weight(x, mu, log_var, context, eps.expand_as(mu)) for eps in draws])
    expected = torch.logsumexp(log_weights, dim=0) - math.log(7)
    # Passes of 10 rows hold 2 draws each: the chunked computation must not change the result.
    torch.testing.assert_close(model.importance_weighted_bound(x, draws, max_rows=10), expected)
    torch.testing.assert_close(model.importance_weighted_bound(x, draws[:1]), log_weights[0])
    assert torch.all(expected >= log_weights.mean(dim=0))  # Jensen: never below the ELBO estimate
    if n_flows:  # with a flow the training ELBO is the same one-sample estimate
        out = model._sample_terms(x, mu, log_var, context, draws[0].expand_as(mu), 1.0)
        torch.testing.assert_close(log_weights[0], out.elbo)


def test_free_bits_hold_each_dimensions_kl_at_the_floor():
    model = _vae().eval()
    x = torch.randn(32, 6)
    eps = torch.randn(32, 3)
    plain = model(x, eps=eps)
    mu, log_var, _ = model.encode(x)
    kl_per_dim = (0.5 * (mu.square() + log_var.exp() - 1 - log_var)).mean(dim=0)
    for floor in (0.0, kl_per_dim.min().item() + 1e-3, 100.0):
        out = model(x, LossSettings(free_bits=floor), eps=eps)
        expected = torch.clamp(kl_per_dim, min=floor).sum() - plain.log_likelihood.mean()
        torch.testing.assert_close(out.loss, expected)
        torch.testing.assert_close(out.kl, plain.kl)  # the reported KL stays exact
    # Above every dimension's KL, the KL term is constant: only the reconstruction trains.
    grads = [torch.autograd.grad(loss, model.posterior.weight)[0]
             for loss in (model(x, LossSettings(free_bits=100.0), eps=eps).loss,
                          -model(x, eps=eps).log_likelihood.mean())]
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


def test_neighbor_loss_is_umaps_cross_entropy():
    from cvae.nn.neighbor_loss import _A, _B, neighbor_loss

    e = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    neighbor = torch.tensor([[0.0, 0.5], [1.0, 2.0]])
    d2 = (e - neighbor).square().sum(dim=1)
    expected = torch.log1p(_A * d2**_B).mean()  # -log q of each pair, q = 1 / (1 + a d^2b)
    torch.testing.assert_close(neighbor_loss(e, neighbor, n_negative=0), expected)
    # Negatives: with two rows, the other row is the only negative, or the row itself (floored distance).
    torch.manual_seed(0)
    far = neighbor_loss(10 * e, 10 * e, n_negative=20)
    near = neighbor_loss(0.1 * e, 0.1 * e, n_negative=20)
    assert far < near  # repulsion is cheaper when the other rows are far away


def test_neighbor_loss_gradient_pulls_neighbors_together_and_pushes_others_apart():
    from cvae.nn.neighbor_loss import neighbor_loss

    torch.manual_seed(0)
    e = torch.randn(64, 2, requires_grad=True)
    neighbor = (e.detach() + 0.5 * torch.randn(64, 2)).requires_grad_()
    neighbor_loss(e, neighbor, n_negative=0).backward()
    with torch.no_grad():
        closer = (e - 0.1 * e.grad - (neighbor - 0.1 * neighbor.grad)).norm(dim=1)
        assert torch.all(closer < (e - neighbor).norm(dim=1))
    spread = torch.randn(64, 2).mul(0.01).requires_grad_()
    neighbor_loss(spread, spread.detach(), n_negative=5).backward()  # only repulsion acts on a clump
    with torch.no_grad():
        assert (spread - 0.01 * spread.grad).std() > spread.std()


def test_contrastive_neighbor_loss_is_infonce_with_a_cauchy_kernel():
    from cvae.nn.neighbor_loss import contrastive_neighbor_loss

    e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]])
    neighbor = torch.tensor([[0.0, 0.5], [1.0, 2.0], [2.0, 3.0]])
    q = 1 / (1 + torch.cdist(e, e).square())
    q_pair = 1 / (1 + (e - neighbor).square().sum(dim=1))
    others = q.sum(dim=1) - 1  # every other row of the batch, not the row itself (q = 1)
    expected = -torch.log(q_pair / (q_pair + others)).mean()
    torch.testing.assert_close(contrastive_neighbor_loss(e, neighbor, scale=1.0), expected)
    torch.testing.assert_close(contrastive_neighbor_loss(e, neighbor, scale=2.0),
                               contrastive_neighbor_loss(2 * e, 2 * neighbor, scale=1.0))


@pytest.mark.parametrize("loss_name", ["neighbor_loss", "contrastive_neighbor_loss"])
def test_neighbor_losses_sum_over_each_rows_pairs(loss_name):
    import cvae.nn.neighbor_loss

    loss = getattr(cvae.nn.neighbor_loss, loss_name)
    kwargs = {"n_negative": 0} if loss_name == "neighbor_loss" else {}
    torch.manual_seed(0)
    e, first, second = torch.randn(5, 2), torch.randn(5, 2), torch.randn(5, 2)
    torch.testing.assert_close(loss(e, torch.cat([first, second]), **kwargs),
                               loss(e, first, **kwargs) + loss(e, second, **kwargs))


def test_contrastive_neighbor_loss_gradient_pulls_neighbors_together_and_pushes_others_apart():
    from cvae.nn.neighbor_loss import contrastive_neighbor_loss

    torch.manual_seed(0)
    e = torch.randn(64, 2).mul(3).requires_grad_()
    neighbor = (e.detach() + 0.5 * torch.randn(64, 2)).requires_grad_()
    contrastive_neighbor_loss(e.detach(), neighbor).backward()
    with torch.no_grad():
        closer = (e - (neighbor - 0.01 * neighbor.grad)).norm(dim=1)
        assert torch.all(closer < (e - neighbor).norm(dim=1))
    spread = torch.randn(64, 2).mul(0.01).requires_grad_()
    contrastive_neighbor_loss(spread, spread.detach()).backward()  # pairs at distance 0: only repulsion acts
    with torch.no_grad():
        assert (spread - 0.01 * spread.grad).std() > spread.std()


@pytest.mark.parametrize("pairs_per_row", [1, 3])
def test_vae_forward_adds_the_weighted_neighbor_loss_summed_over_each_rows_pairs(pairs_per_row):
    from cvae.nn.neighbor_loss import neighbor_loss

    model = _vae().eval()
    x, neighbors, eps = torch.randn(8, 6), torch.randn(8 * pairs_per_row, 6), torch.randn(8, 3)
    plain = model(x, eps=eps)
    torch.manual_seed(0)
    out = model(x, LossSettings(neighbor_weight=2.5, neighbor_objective="umap"), eps=eps, neighbors=neighbors)
    torch.manual_seed(0)
    term = neighbor_loss(model.embed(x), model.embed(neighbors))
    torch.testing.assert_close(out.loss, plain.loss + 2.5 * term)
    torch.testing.assert_close(out.kl, plain.kl)


@pytest.mark.parametrize("name", ["gaussian", "poisson"])
def test_scaled_rows_are_the_encoders_input_less_its_centring_dense_or_sparse(name):
    import scipy.sparse as sp

    from cvae.nn.likelihoods import make_likelihood

    rng = np.random.default_rng(0)
    rows = rng.poisson(2.0, size=(6, 5)).astype(np.float32)
    likelihood = make_likelihood(name, torch.tensor(rng.normal(size=5), dtype=torch.float32),
                                 torch.tensor(rng.uniform(0.5, 2, size=5), dtype=torch.float32),
                                 *([3.0] if name == "poisson" else []))
    standardized = likelihood.standardize(torch.from_numpy(rows)).numpy()
    for scaled in (likelihood.scale_rows(rows), likelihood.scale_rows(sp.csr_matrix(rows)).toarray()):
        np.testing.assert_allclose(scaled - scaled[0], standardized - standardized[0], rtol=1e-5, atol=1e-5)
    assert sp.issparse(likelihood.scale_rows(sp.csr_matrix(rows)))


def test_row_keys_come_from_the_rows_content_and_the_seed():
    from cvae._random import row_keys

    rows = np.random.default_rng(0).random((500, 7)).astype(np.float32)
    keys = row_keys(rows, 3)
    assert keys.shape == (500,) and keys.min() >= 0 and keys.max() < 1 and len(np.unique(keys)) == 500
    # a row's key does not depend on what else is hashed with it, nor on its dtype's width
    np.testing.assert_array_equal(row_keys(rows[[9, 9, 2]].astype(np.float64), 3), keys[[9, 9, 2]])
    assert not np.array_equal(row_keys(rows, 4), keys)
