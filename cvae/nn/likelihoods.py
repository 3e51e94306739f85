"""Decoder likelihoods p(x | z), evaluated in the original data scale.

Continuous data: :class:`GaussianLikelihood`, :class:`BernoulliLikelihood`. Counts (scVI's
model, Lopez et al. 2018): :class:`PoissonLikelihood`, :class:`NegativeBinomialLikelihood`
and its zero-inflated form, whose rates are decoded proportions times the row's observed
total, so that the latent code describes composition rather than depth; here too are the
checks that rows are counts (:func:`check_counts`) and the draws of counts (``draw``).
"""

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

__all__ = [
    "COUNT_LIKELIHOODS",
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "NegativeBinomialLikelihood",
    "PoissonLikelihood",
    "ZeroInflatedNegativeBinomialLikelihood",
    "check_count_rows",
    "check_counts",
    "is_count_likelihood",
    "make_likelihood",
]

_LOG_2PI = math.log(2 * math.pi)
DEFAULT_MIN_LOG_VAR = math.log(1e-3)


def check_counts(low, integers, name, likelihood):
    """Raise ``ValueError`` unless ``name``'s values (from ``low`` up; whole numbers when
    ``integers``) are counts, as a count ``likelihood`` needs."""
    if low < 0 or not integers:
        what = f"negative values (down to {low:.4g})" if low < 0 else "values that are not whole numbers"
        raise ValueError(
            f"likelihood={likelihood!r} models counts (non-negative whole numbers), but {name} holds {what}. "
            "Pass raw counts (not normalized or log-transformed ones), or use likelihood='gaussian'."
        )


def check_count_rows(rows, name, likelihood, whole_numbers=True):
    """:func:`check_counts` of rows given to a fitted count model: no negative values and,
    when ``whole_numbers``, no fractions (the encoder alone, which takes ``log1p`` of
    them, accepts fractions)."""
    low = float(rows.min()) if rows.size else 0.0
    check_counts(low, not whole_numbers or bool(np.all(np.mod(rows, 1) == 0)), name, likelihood)


# Counts per row that scale_rows(per_total=True) scales rows to.
PER_TOTAL = 1e4


class _NormalizedLikelihood(nn.Module):
    """Holds the normalization statistics that the encoder input is standardized with.

    They are buffers that are not saved in the state dict: the run specification holds
    them, and is the one place they are read from (:func:`cvae.spec.build_module`).
    """

    counts = False

    def __init__(self, loc, scale):
        super().__init__()
        self.register_buffer("loc", loc, persistent=False)
        self.register_buffer("scale", scale, persistent=False)

    def standardize(self, x):
        """Rows ``x`` as the encoder sees them."""
        return (x - self.loc) / self.scale

    def scale_rows(self, rows, per_total=False):
        """Rows (an array or CSR matrix) as :meth:`standardize` gives them, less the centring,
        which moves no distance: what the nearest-neighbour search sees, where sparse rows
        stay sparse. With ``per_total``, counts are first scaled to ``PER_TOTAL`` per row
        (counts per 10,000, as single-cell analyses log them), so that rows of other
        library sizes, as other batches have, compare by their composition."""
        inverse = 1 / self.scale.cpu().numpy()
        if self.counts and per_total:
            totals = np.asarray(rows.sum(axis=1), dtype=np.float64).reshape(-1, 1)
            factor = PER_TOTAL / np.maximum(totals, 1)
            rows = sp.csr_matrix(rows.multiply(factor)) if sp.issparse(rows) else rows * factor
        if sp.issparse(rows):
            return sp.csr_matrix((rows.log1p() if self.counts else rows).multiply(inverse))
        return ((np.log1p(rows) if self.counts else rows) * inverse).astype(np.float32, copy=False)


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
        self.register_buffer("log_scale_sum", scale.log().sum(), persistent=False)
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
    """Independent Bernoulli per feature, for data in [0, ``upper``] (e.g. pixel intensities).

    The encoder still sees standardized features; the likelihood is evaluated on
    ``x / upper``. For values strictly between 0 and ``upper`` this is the binary
    cross-entropy that the VAE literature uses for grey-level images; it is a density only
    for binary data.

    Parameters
    ----------
    loc, scale : torch.Tensor of shape (n_features,)
        Normalization statistics used to standardize the encoder input.
    upper : float, default=1.0
        The value modelled as 1: 255 for 8-bit pixel values, which are then modelled as
        ``x / 255`` and decoded back to [0, 255].
    """

    n_params = 1

    def __init__(self, loc, scale, upper=1.0):
        super().__init__(loc, scale)
        self.upper = float(upper)

    def log_prob(self, params, x):
        """Per-sample ``log p(x | z)`` of shape ``(batch,)``."""
        target = x if self.upper == 1.0 else x / self.upper
        bce = nn.functional.binary_cross_entropy_with_logits(params, target, reduction="none")
        return -bce.sum(dim=-1)

    def mean(self, params):
        """Success probabilities times ``upper``, the decoder mean."""
        probabilities = torch.sigmoid(params)
        return probabilities if self.upper == 1.0 else probabilities * self.upper


# The smallest total a row's rates are scaled by: a row of zeros then has rates near zero
# and probability one, with finite gradients.
_MIN_TOTAL = 1e-8
# Bound of the per-feature log-dispersion: soft-clipped, as the posterior's log-variance is.
LOG_DISPERSION_BOUND = 12.0


class PoissonLikelihood(_NormalizedLikelihood):
    """Independent Poisson counts whose rates are the row's total times decoded proportions.

    ``rate = l * softmax(decoder output)`` with ``l`` the row's observed total (its library
    size), as in scVI: the decoder describes composition and the observed depth scales it,
    so ``log p(x | z)`` is the likelihood of the counts given their total. The encoder sees
    ``log1p(x)``, normalized by ``loc`` and ``scale`` (statistics of ``log1p`` of the
    training counts).

    Parameters
    ----------
    loc, scale : torch.Tensor of shape (n_features,)
        Normalization statistics of ``log1p`` of the training counts.
    library_size : float, default=1.0
        Total at which :meth:`mean` decodes: the mean total of the training rows.
    """

    n_params = 1
    counts = True

    def __init__(self, loc, scale, library_size=1.0):
        super().__init__(loc, scale)
        self.register_buffer("library_size", torch.tensor(float(library_size)), persistent=False)

    def standardize(self, x):
        return (torch.log1p(x) - self.loc) / self.scale

    def _log_rate(self, logits, x):
        log_total = x.sum(dim=-1, keepdim=True).clamp_min(_MIN_TOTAL).log()
        return log_total + torch.log_softmax(logits, dim=-1)

    def _logits(self, params):
        return params[..., : self.loc.shape[0]]

    def log_prob(self, params, x):
        """Per-sample ``log p(x | z, l)`` of shape ``(batch,)``, in nats."""
        log_rate = self._log_rate(self._logits(params), x)
        return (x * log_rate - log_rate.exp() - torch.lgamma(x + 1)).sum(dim=-1)

    def _rates(self, params, library_size):
        total = self.library_size if library_size is None else library_size
        return total * torch.softmax(self._logits(params), dim=-1)

    def mean(self, params, library_size=None):
        """Expected counts at ``library_size`` (default: :attr:`library_size`)."""
        return self._rates(params, library_size)

    def draw(self, params, library_size, rng):
        """Counts drawn from p(x | z) at ``library_size``, with numpy generator ``rng``."""
        return rng.poisson(self._rates(params, library_size).cpu().double().numpy()).astype("float32")


class NegativeBinomialLikelihood(PoissonLikelihood):
    """Negative binomial counts: Poisson rates as in :class:`PoissonLikelihood`, with a
    learned inverse dispersion ``theta`` per feature (variance ``mu + mu^2 / theta``)."""

    def __init__(self, loc, scale, library_size=1.0):
        super().__init__(loc, scale, library_size)
        self.raw_log_theta = nn.Parameter(torch.zeros_like(loc))

    @property
    def log_theta(self):
        """Per-feature log inverse dispersion, soft-clipped to +-``LOG_DISPERSION_BOUND``."""
        return LOG_DISPERSION_BOUND * torch.tanh(self.raw_log_theta / LOG_DISPERSION_BOUND)

    def _nb_log_prob(self, log_mu, x):
        """Per-feature negative binomial log-probabilities at log-means ``log_mu``."""
        log_theta = self.log_theta
        theta = log_theta.exp()
        log_theta_mu = torch.logaddexp(log_theta, log_mu)
        return (torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1)
                + theta * (log_theta - log_theta_mu) + x * (log_mu - log_theta_mu))

    def log_prob(self, params, x):
        return self._nb_log_prob(self._log_rate(self._logits(params), x), x).sum(dim=-1)

    def draw(self, params, library_size, rng):
        mu = self._rates(params, library_size).cpu().double().numpy()
        theta = self.log_theta.exp().detach().cpu().double().numpy()
        return rng.poisson(rng.gamma(theta, mu / theta)).astype("float32")


class ZeroInflatedNegativeBinomialLikelihood(NegativeBinomialLikelihood):
    """:class:`NegativeBinomialLikelihood` with a decoded probability, per sample and
    feature, that a count is an extra zero (a dropout)."""

    n_params = 2

    def _dropout_logits(self, params):
        return params[..., self.loc.shape[0] :]

    def log_prob(self, params, x):
        nb = self._nb_log_prob(self._log_rate(self._logits(params), x), x)
        pi = self._dropout_logits(params)
        log_keep = -nn.functional.softplus(pi)  # log(1 - sigmoid(pi))
        log_drop = -nn.functional.softplus(-pi)  # log sigmoid(pi)
        zero = torch.logaddexp(log_drop, log_keep + nb)
        return torch.where(x == 0, zero, log_keep + nb).sum(dim=-1)

    def mean(self, params, library_size=None):
        return torch.sigmoid(-self._dropout_logits(params)) * self._rates(params, library_size)

    def draw(self, params, library_size, rng):
        counts = super().draw(params, library_size, rng)
        dropped = rng.random(counts.shape) < torch.sigmoid(self._dropout_logits(params)).cpu().numpy()
        return counts * ~dropped


LIKELIHOODS = {
    "gaussian": GaussianLikelihood,
    "bernoulli": BernoulliLikelihood,
    "poisson": PoissonLikelihood,
    "negative_binomial": NegativeBinomialLikelihood,
    "zinb": ZeroInflatedNegativeBinomialLikelihood,
}
COUNT_LIKELIHOODS = ("poisson", "negative_binomial", "zinb")


def is_count_likelihood(name):
    """Whether the likelihood called ``name`` models counts (the one test of it: the encoder
    then sees ``log1p`` of the rows, and the model decodes at a library size)."""
    return name in COUNT_LIKELIHOODS


def make_likelihood(name, loc, scale, library_size=None, upper=None):
    """Build the likelihood called ``name`` with the given normalization statistics (and,
    for counts, the total at which it decodes; for the Bernoulli, the value it models as 1)."""
    if is_count_likelihood(name):
        return LIKELIHOODS[name](loc, scale, 1.0 if library_size is None else library_size)
    if name == "bernoulli":
        return LIKELIHOODS[name](loc, scale, 1.0 if upper is None else upper)
    return LIKELIHOODS[name](loc, scale)
