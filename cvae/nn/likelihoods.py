"""Decoder likelihoods p(x | z), evaluated in the original data scale."""

import math

import torch
from torch import nn

__all__ = ["LIKELIHOODS", "BernoulliLikelihood", "GaussianLikelihood", "make_likelihood"]

_LOG_2PI = math.log(2 * math.pi)
DEFAULT_MIN_LOG_VAR = math.log(1e-3)


class _NormalizedLikelihood(nn.Module):
    """Holds the normalization statistics that the encoder input is standardized with."""

    def __init__(self, loc, scale):
        super().__init__()
        self.register_buffer("loc", loc)
        self.register_buffer("scale", scale)

    def standardize(self, x):
        return (x - self.loc) / self.scale


class GaussianLikelihood(_NormalizedLikelihood):
    """Diagonal Gaussian: the decoder gives the mean, each feature has a learned variance.

    One variance per feature, shared by all samples (a "calibrated decoder", Rybkin et al.
    2021), rather than a variance per sample from the decoder, which on MNIST let a few rare
    pixels dominate the loss (benchmarks/README.md, "How the defaults were chosen").

    The decoder works on normalized features ``(x - loc) / scale``; ``log_prob`` adds the
    Jacobian ``-sum(log scale)`` so the result is a density of ``x`` itself, in nats. The
    log-variance is bounded below by ``min_log_var`` (a smooth floor): on a feature that is
    constant in the training data the unbounded optimum is zero variance and a loss of
    minus infinity.

    Parameters
    ----------
    loc, scale : torch.Tensor of shape (n_features,)
        Normalization statistics (``scale > 0``).
    min_log_var : float, default=log(1e-3)
        Floor of the per-feature log-variance, in normalized units.
    """

    n_params = 1

    def __init__(self, loc, scale, min_log_var=DEFAULT_MIN_LOG_VAR):
        super().__init__(loc, scale)
        self.register_buffer("log_scale_sum", scale.log().sum())
        self.raw_log_var = nn.Parameter(torch.zeros_like(loc))
        self.min_log_var = min_log_var

    @property
    def log_var(self):
        """Per-feature log-variance in normalized units, softly floored at ``min_log_var``."""
        return self.min_log_var + nn.functional.softplus(self.raw_log_var - self.min_log_var)

    def log_prob(self, params, x):
        """Per-sample ``log p(x | z)`` of shape ``(batch,)``; ``params`` is the decoder mean."""
        log_var = self.log_var
        sq = (self.standardize(x) - params).square()
        per_feature = -0.5 * (_LOG_2PI + log_var + sq * torch.exp(-log_var))
        return per_feature.sum(dim=-1) - self.log_scale_sum

    def mean(self, params):
        """Decoder mean in the original data scale."""
        return self.loc + self.scale * params


class BernoulliLikelihood(_NormalizedLikelihood):
    """Independent Bernoulli per feature, for data in [0, 1] (e.g. pixel intensities).

    The encoder still sees standardized features; the likelihood is evaluated on ``x``
    itself. For values strictly between 0 and 1 this is the binary cross-entropy that the
    VAE literature uses for grey-level images; it is a density only for binary data.

    Parameters
    ----------
    loc, scale : torch.Tensor of shape (n_features,)
        Normalization statistics used to standardize the encoder input.
    """

    n_params = 1

    def log_prob(self, params, x):
        """Per-sample ``log p(x | z)`` of shape ``(batch,)``."""
        bce = nn.functional.binary_cross_entropy_with_logits(params, x, reduction="none")
        return -bce.sum(dim=-1)

    def mean(self, params):
        """Success probabilities, the decoder mean."""
        return torch.sigmoid(params)


LIKELIHOODS = {"gaussian": GaussianLikelihood, "bernoulli": BernoulliLikelihood}


def make_likelihood(name, loc, scale):
    """Build the likelihood called ``name`` with the given normalization statistics."""
    return LIKELIHOODS[name](loc, scale)
