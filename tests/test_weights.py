"""sample_weight: zero weight is a dropped row; integer weights are repeated rows in expectation."""

import numpy as np
import pytest
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from cvae import CompressionVAE
from cvae.nn import VAE
from cvae.nn.vae import LossSettings
from cvae.training.trainer import evaluate

FIT = dict(hidden_layer_sizes=(32, 16), batch_size=64, max_steps=60, validation_interval=20, random_state=0,
           learning_rate="constant")


@pytest.fixture(scope="module")
def X(digits):
    return digits[0][:600]


def test_zero_weight_is_the_same_as_leaving_the_row_out(X):
    weights = np.ones(len(X))
    dropped = [3, 100, 599]
    weights[dropped] = 0
    a = CompressionVAE(**FIT).fit(X, sample_weight=weights)
    b = CompressionVAE(**FIT).fit(np.delete(X, dropped, axis=0))
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    assert a.best_validation_loss_ == b.best_validation_loss_
    # with validation data given, too; and with the neighbour term
    kw = dict(FIT, neighbor_weight=0.3, n_neighbors=5)
    a = CompressionVAE(**kw).fit(X[:500], sample_weight=weights[:500], X_valid=X[500:])
    b = CompressionVAE(**kw).fit(np.delete(X[:500], dropped[:2], axis=0), X_valid=X[500:])
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


def test_equal_weights_are_no_weights(X):
    a = CompressionVAE(**FIT).fit(X, sample_weight=np.full(len(X), 2.5))
    b = CompressionVAE(**FIT).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


def test_weights_change_the_model_and_pass_through_a_pipeline(X):
    weights = np.random.default_rng(0).integers(1, 4, len(X)).astype(float)
    a = CompressionVAE(**FIT).fit(X, sample_weight=weights)
    assert not np.array_equal(a.transform(X), CompressionVAE(**FIT).fit(X).transform(X))
    pipe = make_pipeline(FunctionTransformer(), CompressionVAE(**FIT))
    pipe.fit(X, compressionvae__sample_weight=weights)
    np.testing.assert_array_equal(pipe.transform(X), a.transform(X))


def test_weighted_statistics_are_those_of_repeated_rows(X):
    weights = np.random.default_rng(1).integers(1, 4, len(X))
    a = CompressionVAE(**dict(FIT, normalize="feature")).fit(X, sample_weight=weights, X_valid=X[:50])
    b = CompressionVAE(**dict(FIT, normalize="feature")).fit(np.repeat(X, weights, axis=0), X_valid=X[:50])
    np.testing.assert_allclose(a.mean_, b.mean_, rtol=1e-5)
    np.testing.assert_allclose(a.scale_, b.scale_, rtol=1e-5)


def test_weighted_objective_and_gradient_equal_those_of_repeated_rows():
    """The training loss of a batch with integer weights (scaled to average 1) is the loss of
    the batch with each row repeated: so is its gradient, so the expected step is the same."""
    torch.manual_seed(0)
    model = VAE(6, 2, [16], torch.zeros(6), torch.ones(6), "gaussian").double()
    x = torch.randn(5, 6, dtype=torch.float64)
    counts = torch.tensor([1, 3, 0, 2, 1])
    eps = torch.randn(5, 2, dtype=torch.float64)

    def value_and_grad(rows, noise, weights, free_bits):
        model.zero_grad()
        out = model(rows, LossSettings(free_bits=free_bits), eps=noise, weights=weights)
        out.loss.backward()
        return [out.loss.detach()] + [p.grad.clone() for p in model.parameters() if p.grad is not None]

    index = torch.arange(5).repeat_interleave(counts)
    for free_bits in (0.0, 0.5):
        weighted = value_and_grad(x, eps, counts.double() / counts.double().mean(), free_bits)
        repeated = value_and_grad(x[index], eps[index], None, free_bits)
        for a, b in zip(weighted, repeated):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("objective", ["umap", "tsne"])
def test_neighbor_terms_are_linear_in_the_weights(objective):
    from cvae.nn.neighbor_loss import NEIGHBOR_OBJECTIVES

    loss = NEIGHBOR_OBJECTIVES[objective]
    gen = torch.Generator().manual_seed(0)
    embedding, neighbors = torch.randn(8, 2, generator=gen), torch.randn(16, 2, generator=gen)
    w1, w2 = torch.rand(8, generator=gen), torch.rand(8, generator=gen)

    def term(weights):  # the same negative samples every time
        return loss(embedding, neighbors, weights=weights, generator=torch.Generator().manual_seed(1))

    torch.testing.assert_close(term(torch.ones(8)), term(None))
    torch.testing.assert_close(term(2 * w1 + 3 * w2), 2 * term(w1) + 3 * term(w2))
    assert not torch.allclose(term(w1), term(w2))


def test_weighted_validation_loss_is_the_weighted_mean():
    from cvae._random import generator

    torch.manual_seed(0)
    model = VAE(4, 2, [8], torch.zeros(4), torch.ones(4), "gaussian").eval()
    x = torch.randn(6, 4)
    weights = torch.tensor([0.5, 1.5, 1.0, 2.0, 0.5, 0.5])
    with torch.no_grad():  # the noise evaluate draws
        out = model(x, generator=generator("validation", 0))
    expected = float(((out.kl - out.log_likelihood) * weights).sum() / weights.sum())
    scores = evaluate(model, [(x, None, weights)])
    assert scores["loss"] == pytest.approx(expected, rel=1e-6)
    assert scores["kl"] == pytest.approx(float((out.kl * weights).sum() / weights.sum()), rel=1e-6)


def test_streamed_rows_take_their_weights_along(X, tmp_path):
    weights = np.random.default_rng(2).random(len(X))
    np.save(tmp_path / "X.npy", X)
    a = CompressionVAE(**FIT).fit(tmp_path / "X.npy", sample_weight=weights)
    b = CompressionVAE(**FIT, placement="encoder").fit(X, sample_weight=weights)  # "auto" for streamed rows
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


@pytest.mark.parametrize(
    "weights, match",
    [
        (-np.ones(600), "Negative values in data passed to `sample_weight`"),
        (np.ones(5), r"sample_weight.shape == \(5,\), expected \(600,\)"),
        (np.zeros(600), "Sample weights must contain at least one non-zero number"),
        (np.full(600, np.nan), r"sample_weight holds 600 non-finite value\(s\) \(NaN or infinity\), first at row 0"),
        (np.ones((600, 2)), "Sample weights must be 1D array or scalar"),
    ],
)
def test_bad_sample_weights_are_clear_errors(X, weights, match):
    with pytest.raises(ValueError, match=match):
        CompressionVAE(**FIT).fit(X, sample_weight=weights)


@pytest.mark.parametrize("weights, match", [
    (np.nan, "sample_weight must be a finite number, got nan"),
    (np.inf, "sample_weight must be a finite number, got inf"),
    ([1.0] * 99 + [np.inf], r"sample_weight holds 1 non-finite value\(s\) \(NaN or infinity\), first at row 99"),
    ([1e-300] * 99 + [1.0], "sample_weight spans too wide a range: 99 row"),
])
def test_unusable_sample_weights_say_what_is_wrong(weights, match, X, fast):
    with pytest.raises(ValueError, match=match):
        CompressionVAE(**fast).fit(X[:100], sample_weight=weights)


def test_huge_sample_weights_are_rescaled_without_overflow(X, fast):
    big = CompressionVAE(**fast).fit(X[:100], sample_weight=[1e308] * 99 + [1e307])
    small = CompressionVAE(**fast).fit(X[:100], sample_weight=[10.0] * 99 + [1.0])
    np.testing.assert_allclose(big.transform(X[:20]), small.transform(X[:20]), atol=1e-5)
