"""Count likelihoods: exact log-probabilities, a bound that converges, counts in and out."""

import math
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy import stats
from scipy.special import expit, softmax

from cvae import CompressionVAE
from cvae.datasets import make_counts
from cvae.nn import VAE
from cvae.nn.likelihoods import make_likelihood

FIT = dict(hidden_layer_sizes=(32, 16), batch_size=64, max_steps=100, validation_interval=50, random_state=0,
           learning_rate="constant")


@pytest.fixture(scope="module")
def counts():
    X, labels, _ = make_counts(600, 80, n_clusters=4, random_state=0)
    return X, labels


def _scipy_log_prob(name, logits, dropout_logits, theta, x):
    rate = x.sum() * softmax(logits)
    if name == "poisson":
        return stats.poisson.logpmf(x, rate).sum()
    nb = stats.nbinom.logpmf(x, theta, theta / (theta + rate))
    if name == "negative_binomial":
        return nb.sum()
    pi = expit(dropout_logits)
    return np.where(x == 0, np.log(pi + (1 - pi) * np.exp(nb)), np.log1p(-pi) + nb).sum()


@pytest.mark.parametrize("name", ["poisson", "negative_binomial", "zinb"])
def test_log_probabilities_match_scipy(name):
    rng = np.random.default_rng(0)
    n = 7
    likelihood = make_likelihood(name, torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64),
                                 100.0).double()
    if name != "poisson":
        with torch.no_grad():
            likelihood.raw_log_theta.copy_(torch.from_numpy(rng.normal(0, 1.5, n)))
    theta = likelihood.log_theta.exp().detach().numpy() if name != "poisson" else None
    x = rng.poisson(3.0, (5, n)).astype(float)
    x[0] = 0  # a row of zeros has probability one
    params = rng.normal(0, 1, (5, likelihood.n_params * n))
    got = likelihood.log_prob(torch.from_numpy(params), torch.from_numpy(x)).detach().numpy()
    expected = [_scipy_log_prob(name, p[:n], p[n:], theta, row) for p, row in zip(params, x)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert got[0] == pytest.approx(0.0, abs=1e-6)


@torch.no_grad()
@pytest.mark.parametrize("name", ["poisson", "negative_binomial"])
def test_importance_weighted_bound_converges_on_a_count_model(name):
    torch.manual_seed(0)
    model = VAE(4, 1, [16], torch.zeros(4), torch.ones(4), name, library_size=10.0).double().eval()
    x = torch.tensor([[3.0, 0.0, 1.0, 6.0], [0.0, 2.0, 2.0, 1.0], [1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    half_width, n_points = 10.0, 20001
    z = torch.linspace(-half_width, half_width, n_points, dtype=torch.float64)[:, None]
    params = model.decode(z)
    log_joint = torch.stack([model.likelihood.log_prob(params, row.expand(len(z), -1)) for row in x])
    log_joint = log_joint - 0.5 * (math.log(2 * math.pi) + z[:, 0].square())
    log_px = torch.logsumexp(log_joint, dim=1) + math.log(2 * half_width / (n_points - 1))
    draws = torch.randn(20000, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(model.importance_weighted_bound(x, draws), log_px, atol=0.02, rtol=0)
    assert torch.all(model.mean_elbo(x, draws[:2000]) < log_px)
    assert torch.all(log_px < 0)  # a probability, not a density


@pytest.mark.parametrize("name", ["poisson", "negative_binomial", "zinb"])
def test_count_model_fits_decodes_and_samples_counts(counts, name, tmp_path):
    X, labels = counts
    vae = CompressionVAE(likelihood=name, logdir=tmp_path / "run", **FIT).fit(X[:500], X_valid=X[500:])
    assert vae.likelihood_ == name
    assert vae.spec_.library_size == pytest.approx(X[:500].sum(axis=1).mean(), rel=1e-5)
    Z = vae.transform(X)
    decoded = vae.inverse_transform(Z[:4])
    if name != "zinb":  # expected counts add up to the library size decoded at
        np.testing.assert_allclose(decoded.sum(axis=1), vae.spec_.library_size, rtol=1e-4)
        np.testing.assert_allclose(vae.inverse_transform(Z[:4], library_size=1000).sum(axis=1), 1000, rtol=1e-4)
    else:
        assert np.all(decoded.sum(axis=1) < vae.spec_.library_size)
    drawn = vae.sample(50, random_state=0)
    assert drawn.shape == (50, 80) and np.all(drawn >= 0) and np.all(drawn == np.round(drawn))
    np.testing.assert_array_equal(drawn, vae.sample(50, random_state=0))
    scores = vae.score_samples(X[:20])
    assert np.all(scores < 0) and np.all(vae.score_samples(X[:20], n_importance_samples=64) > scores - 1.0)
    for copy in (CompressionVAE.load(tmp_path / "run"), pickle.loads(pickle.dumps(vae))):
        assert copy.spec_.library_size == vae.spec_.library_size
        np.testing.assert_array_equal(copy.transform(X), Z)


def test_embedding_follows_composition_not_depth(counts):
    """Rows of one cluster at ten times the depth embed near their cluster."""
    from sklearn.neighbors import KNeighborsClassifier

    X, labels = counts
    vae = CompressionVAE(likelihood="poisson", **dict(FIT, max_steps=400)).fit(X[:500])
    knn = KNeighborsClassifier(10).fit(vae.transform(X[:500]), labels[:500])
    deep = sp.csr_matrix(X[500:].multiply(10))
    assert knn.score(vae.transform(deep), labels[500:]) > 0.8
    assert knn.score(vae.transform(X[500:]), labels[500:]) > 0.8


def test_auto_never_chooses_a_count_likelihood(counts):
    assert CompressionVAE(**dict(FIT, max_steps=2)).fit(counts[0]).likelihood_ == "gaussian"


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda X: X - 1.0, r"likelihood='poisson' models counts.*negative values \(down to -1\)"),
        (lambda X: X * 0.5, r"likelihood='poisson' models counts.*values that are not whole numbers"),
        (lambda X: X * 0, r"every count in X is zero"),
    ],
)
def test_non_counts_are_refused_by_a_count_likelihood(counts, make, match):
    X = counts[0].toarray()
    with pytest.raises(ValueError, match=match):
        CompressionVAE(likelihood="poisson", **FIT).fit(make(X))


def test_fitted_count_model_checks_its_input(counts):
    X = counts[0]
    vae = CompressionVAE(likelihood="negative_binomial", **dict(FIT, max_steps=2)).fit(X)
    with pytest.raises(ValueError, match="negative values"):
        vae.transform(X.toarray() - 1)
    with pytest.raises(ValueError, match="not whole numbers"):
        vae.score_samples(X.toarray() + 0.5)
    vae.transform(X.toarray() + 0.5)  # the encoder takes any non-negative input
    with pytest.raises(ValueError, match="library_size must be a positive number, got -3"):
        vae.inverse_transform(np.zeros((1, 2)), library_size=-3)
    gaussian = CompressionVAE(**dict(FIT, max_steps=2)).fit(X)
    with pytest.raises(ValueError, match="library_size applies to count likelihoods; this model's is 'gaussian'"):
        gaussian.inverse_transform(np.zeros((1, 2)), library_size=10)
