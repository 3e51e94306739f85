"""Decoder likelihoods (cvae.nn.likelihoods): densities of the raw data, bounded variances, what the
encoder and the search see."""

import math

import numpy as np
import pytest
import torch

from cvae.nn import BernoulliLikelihood, GaussianLikelihood


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


def test_bernoulli_log_prob_matches_torch_distributions():
    lik = BernoulliLikelihood(torch.zeros(5), torch.ones(5))
    logits = torch.randn(3, 5)
    x = torch.randint(0, 2, (3, 5)).float()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(1)
    assert torch.allclose(lik.log_prob(logits, x), expected, atol=1e-6)
    assert torch.allclose(lik.mean(logits), torch.sigmoid(logits))


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
    # per row total (covariates' graphs): counts per 10,000 first, for counts; other data as it is
    per_total = [likelihood.scale_rows(rows, per_total=True),
                 likelihood.scale_rows(sp.csr_matrix(rows), per_total=True).toarray()]
    expected = likelihood.scale_rows(rows * (1e4 / np.maximum(rows.sum(axis=1, keepdims=True), 1)))
    for scaled in per_total:
        np.testing.assert_allclose(scaled, expected if name == "poisson" else likelihood.scale_rows(rows), rtol=1e-5)
