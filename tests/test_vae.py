"""The VAE (cvae.nn.vae): KL, ELBO, embedding, importance-weighted bounds, free bits, the neighbour term
in its loss, the default widths."""

import math

import pytest
import torch

from cvae.nn import VAE
from cvae.nn.vae import LossSettings, default_hidden_sizes


def _vae(n_flows=0, likelihood="gaussian", n_features=6, n_latent=3):
    torch.manual_seed(0)
    return VAE(n_features, n_latent, [16, 8], torch.zeros(n_features), torch.ones(n_features), likelihood, n_flows)


def _log_marginal_by_quadrature(model, x, half_width=10.0, n_points=20001):
    """log p(x) = log of the integral of p(x | z) p(z) over a 1-D latent, on a fine grid."""
    z = torch.linspace(-half_width, half_width, n_points, dtype=torch.float64)[:, None]
    params = model.decode(z)
    log_joint = torch.stack([model.likelihood.log_prob(params, row.expand(len(z), -1)) for row in x])
    log_joint = log_joint - 0.5 * (math.log(2 * math.pi) + z[:, 0].square())
    return torch.logsumexp(log_joint, dim=1) + math.log(2 * half_width / (n_points - 1))


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


def test_covariates_condition_the_encoder_and_the_decoder():
    torch.manual_seed(0)
    plain = VAE(4, 2, [8], torch.zeros(4), torch.ones(4))
    torch.manual_seed(0)
    conditioned = VAE(4, 2, [8], torch.zeros(4), torch.ones(4), n_covariates=3)
    assert [p.shape for p in plain.parameters()] != [p.shape for p in conditioned.parameters()]
    x = torch.randn(5, 4)
    one_hot = torch.eye(3)[[0, 1, 2, 0, 1]]
    rows = torch.cat([x, one_hot], dim=1)
    data, covariates = conditioned.split(rows)
    assert torch.equal(data, x) and torch.equal(covariates, one_hot)
    assert torch.equal(conditioned.standardize(rows), x)
    with torch.no_grad():
        conditioned.encoder[0].weight[:, 4:] += 1.0  # the covariates' columns reach the encoder ...
        conditioned.decoder[0][0].weight[:, 2:] += 1.0  # ... and the decoder
        z = conditioned.embed(rows)
        other = torch.cat([x, torch.eye(3)[[1, 2, 0, 1, 2]]], dim=1)
        assert not torch.allclose(conditioned.embed(other), z)
        shuffled = one_hot[[1, 2, 0, 1, 2]]
        assert not torch.allclose(conditioned.decode(z, covariates=one_hot), conditioned.decode(z, covariates=shuffled))
        assert torch.equal(conditioned.decode_params(torch.cat([z, one_hot], dim=1)),
                           conditioned.decode(z, covariates=one_hot))
        out = conditioned(rows, eps=torch.zeros(5, 2))
        assert out.log_likelihood.shape == (5,)  # scored on the data's 4 columns, not the covariates'


def test_a_classifier_reads_the_encoders_last_hidden_layer_and_changes_nothing_else():
    plain = VAE(4, 2, [8, 6], torch.zeros(4), torch.ones(4), generator=torch.Generator().manual_seed(0))
    labelled = VAE(4, 2, [8, 6], torch.zeros(4), torch.ones(4), generator=torch.Generator().manual_seed(0), n_classes=3)
    weights = plain.state_dict()
    extra = {name for name in labelled.state_dict() if name not in weights}
    assert extra and all(name.startswith("classifier.") for name in extra)
    for name, value in weights.items():  # drawn after the rest: the rest is drawn alike
        assert torch.equal(labelled.state_dict()[name], value)
    x = torch.randn(5, 4)
    with torch.no_grad():
        hidden = labelled.encoder(x)  # loc 0, scale 1: the encoder sees the rows as they are
        torch.testing.assert_close(labelled.features(x), hidden)
        logits = labelled.classify(x)
        torch.testing.assert_close(logits, labelled.classifier[1](labelled.classifier[0](hidden)))
    assert logits.shape == (5, 3) and logits.dtype == torch.float32
    with pytest.raises(ValueError, match="no classifier"):
        plain.classify(x)


@pytest.mark.parametrize("n_flows", [0, 2])
def test_the_reconstruction_of_a_fraction_of_the_batch_estimates_the_whole(n_flows):
    torch.manual_seed(0)
    model = VAE(6, 2, [8], torch.zeros(6), torch.ones(6), "gaussian", n_flows=n_flows)
    x, eps = torch.randn(8, 6), torch.randn(8, 2)
    weights = torch.linspace(0.5, 1.5, 8)
    whole = model(x, eps=eps, weights=weights)
    assert torch.equal(model(x, LossSettings(reconstruction_fraction=1.0), eps=eps, weights=weights).loss, whole.loss)
    quarter = model(x, LossSettings(reconstruction_fraction=0.25), eps=eps, weights=weights)
    assert quarter.log_likelihood.shape == (2,) and quarter.kl.shape == (8,)  # the first ceil(8 / 4) rows
    torch.testing.assert_close(quarter.log_likelihood, whole.log_likelihood[:2])
    expected = (whole.kl * weights).mean() - (whole.log_likelihood[:2] * weights[:2]).mean()
    torch.testing.assert_close(quarter.loss, expected)
    one_row = model(x, LossSettings(reconstruction_fraction=0.01), eps=eps)
    assert one_row.log_likelihood.shape == (1,)  # at least one row
