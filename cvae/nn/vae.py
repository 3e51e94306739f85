"""The variational autoencoder: MLP encoder, optional IAF posterior, MLP decoder."""

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from .flows import InverseAutoregressiveFlow
from .likelihoods import make_likelihood
from .init import initialize_weights, linear
from .mlp import MLP
from .neighbor_loss import NEIGHBOR_OBJECTIVES

__all__ = ["LossSettings", "VAE", "VAEOutput"]

_LOG_2PI = math.log(2 * math.pi)
LOG_VAR_BOUND = 15.0


@dataclass(frozen=True)
class LossSettings:
    """What the training loss adds to the negative ELBO, and how it weighs the KL term.

    Parameters
    ----------
    beta : float, default=1.0
        Weight of the KL term; 1 gives the true ELBO.
    free_bits : float, default=0.0
        Nats of KL per latent dimension, averaged over the batch, that the loss does not
        penalize (Kingma et al., 2016); the reported ``kl`` stays exact.
    neighbor_weight : float, default=0.0
        Weight of the neighbour term, for batches that come with data-space neighbours.
    reconstruction_fraction : float, default=1.0
        Share, in (0, 1], of a batch's rows whose reconstruction term is decoded and
        scored: the first ``ceil(fraction * n)`` of a shuffled batch, whose mean is an
        unbiased estimate of the batch's. The KL and neighbour terms see every row.
    neighbor_objective : str, default="tsne"
        Key of :data:`cvae.nn.neighbor_loss.NEIGHBOR_OBJECTIVES`.
    gather : callable, default=None
        In a distributed run, a function of this process's rows of the embedding that
        returns every process's rows and where this process's begin
        (:meth:`cvae.training.distributed.Distributed.gather_rows`): the neighbour term then
        draws its negatives from the whole batch, as one process would.
    """

    beta: float = 1.0
    free_bits: float = 0.0
    neighbor_weight: float = 0.0
    reconstruction_fraction: float = 1.0
    neighbor_objective: str = "tsne"
    gather: Optional[Callable] = None


@dataclass
class VAEOutput:
    """Per-sample terms of one forward pass; ``loss`` is what the trainer minimizes.

    Attributes
    ----------
    loss : torch.Tensor of shape ()
        Mean over the batch of ``-log p(x|z) + beta * KL``.
    log_likelihood : torch.Tensor of shape (batch,)
        Reconstruction term ``log p(x|z)`` in nats.
    kl : torch.Tensor of shape (batch,)
        KL term (closed form without flows, single-sample estimate with flows).
    z : torch.Tensor of shape (batch, n_latent)
        The posterior sample that was decoded.
    """

    loss: torch.Tensor
    log_likelihood: torch.Tensor
    kl: torch.Tensor
    z: torch.Tensor

    @property
    def elbo(self):
        return self.log_likelihood - self.kl


# Width of the classifier's hidden layer (scANVI's classifier has 128 units too).
CLASSIFIER_WIDTH = 128


def _standard_normal_log_prob(z):
    return -0.5 * (_LOG_2PI + z.square()).sum(dim=1)


class VAE(nn.Module):
    """Gaussian-posterior VAE with optional inverse autoregressive flow.

    Parameters
    ----------
    n_features : int
        Data dimension.
    n_latent : int
        Latent dimension.
    hidden_sizes : sequence of int
        Encoder widths; the decoder mirrors them.
    loc, scale : torch.Tensor of shape (n_features,)
        Feature normalization applied inside the model, so it takes and returns raw data.
    likelihood : str, default="gaussian"
        Decoder distribution, a key of :data:`cvae.nn.likelihoods.LIKELIHOODS`.
    n_flows : int, default=0
        Number of IAF steps on the posterior.
    dropout : float, default=0.0
        Dropout probability in encoder and decoder hidden layers.
    activation : str, default="relu"
        Hidden non-linearity.
    initializer : str, default="orthogonal"
        Weight initialization scheme (see :func:`initialize_weights`).
    library_size : float, default=None
        For a count likelihood, the total at which :meth:`decode_mean` decodes.
    upper : float, default=None
        For the Bernoulli likelihood, the value it models as 1 (``None``: 1).
    generator : torch.Generator, default=None
        Where the initial weights are drawn from; ``None`` means torch's default generator.
    n_covariates : int, default=0
        Encoded covariate columns (:mod:`cvae.data.covariates`) that follow the
        ``n_features`` data columns of every input row. The encoder and the decoder both
        take them: the decoder so that the latent code need not hold what they explain (a
        batch's effect), the encoder so that rows of a new batch can be mapped.
    n_classes : int, default=0
        With at least 2, a classifier of that many classes (``classifier``) reads the
        encoder's last hidden layer: M2's q(y | x) of Kingma et al. (2014), sharing the
        encoder's layers, trained beside the ELBO on labelled rows
        (:class:`cvae.training.callbacks.ClassifierLoss`); :meth:`classify` gives its logits.
    """

    def __init__(
        self,
        n_features,
        n_latent,
        hidden_sizes,
        loc,
        scale,
        likelihood="gaussian",
        n_flows=0,
        dropout=0.0,
        activation="relu",
        initializer="orthogonal",
        library_size=None,
        generator=None,
        upper=None,
        n_covariates=0,
        n_classes=0,
    ):
        super().__init__()
        hidden_sizes = list(hidden_sizes)
        self.n_features = n_features
        self.n_latent = n_latent
        self.n_covariates = n_covariates
        self.likelihood = make_likelihood(likelihood, loc.float(), scale.float(), library_size, upper)
        self.encoder = MLP(n_features + n_covariates, hidden_sizes, dropout, activation, generator)
        width = self.encoder.out_features
        context = min(width, 64) if n_flows else 0
        self.posterior = linear(width, 2 * n_latent + context, generator=generator)
        self.flow = None
        if n_flows:
            self.flow = InverseAutoregressiveFlow(n_latent, n_flows, [max(context, 2 * n_latent)] * 2, context,
                                                  generator=generator)
        self.decoder = nn.Sequential(
            MLP(n_latent + n_covariates, hidden_sizes[::-1], dropout, activation, generator),
            linear(hidden_sizes[0] if hidden_sizes else n_latent, self.likelihood.n_params * n_features,
                   generator=generator),
        )
        initialize_weights(self, initializer, generator)
        if self.flow is not None:
            self.flow.zero_output_layer()  # initialize_weights randomized it
        self.classifier = None
        if n_classes:  # drawn after the rest, which a model without classes draws alike
            self.classifier = nn.Sequential(MLP(width, [CLASSIFIER_WIDTH], dropout, activation, generator),
                                            linear(CLASSIFIER_WIDTH, n_classes, generator=generator))
            initialize_weights(self.classifier, initializer, generator)

    def split(self, x):
        """Input rows as ``(data, covariates)``; ``covariates`` is ``None`` for a model without."""
        if not self.n_covariates:
            return x, None
        return x[:, : self.n_features], x[:, self.n_features :]

    def standardize(self, x):
        """The data columns of input rows as the encoder sees them."""
        return self.likelihood.standardize(self.split(x)[0])

    def scale_rows(self, rows):
        """The data columns of input rows (an array or CSR matrix) as the neighbour search
        sees them (:meth:`cvae.nn.likelihoods._NormalizedLikelihood.scale_rows`): with
        covariates, counts per row total, as rows of batches of other library sizes match
        better so (benchmarks/README.md, "Covariates")."""
        if not self.n_covariates:
            return self.likelihood.scale_rows(rows)
        return self.likelihood.scale_rows(rows[:, : self.n_features], per_total=True)

    def encode(self, x, generator=None):
        """Return ``(mu, log_var, context)`` of q(z_0 | x) for raw input rows ``x`` (data,
        then covariates).

        In training mode, dropout masks come from ``generator`` (torch's default generator
        when ``None``).

        The log-variance is soft-clipped to (-LOG_VAR_BOUND, LOG_VAR_BOUND): near-linear
        in the range training uses, but ``exp(log_var)`` cannot overflow on inputs far
        outside the training data.
        """
        # .float(): under mixed-precision autocast the products run in 16 bits, but the
        # posterior parameters and the loss terms computed from them stay float32.
        out = self.posterior(self.features(x, generator)).float()
        n = self.n_latent
        log_var = LOG_VAR_BOUND * torch.tanh(out[:, n : 2 * n] / LOG_VAR_BOUND)
        return out[:, :n], log_var, out[:, 2 * n :]

    def features(self, x, generator=None):
        """The encoder's last hidden layer for raw input rows ``x`` (data, then covariates):
        what the posterior and the classifier read."""
        data, covariates = self.split(x)
        inputs = self.likelihood.standardize(data)
        if covariates is not None:
            inputs = torch.cat([inputs, covariates.to(inputs.dtype)], dim=1)
        return self.encoder(inputs, generator)

    def classify(self, x, generator=None):
        """Class logits (float32) of raw input rows ``x`` by the classifier; only for a model
        with ``n_classes``."""
        if self.classifier is None:
            raise ValueError("this model has no classifier: it was built with n_classes=0")
        hidden, output = self.classifier
        return output(hidden(self.features(x, generator), generator)).float()

    def _transform_posterior(self, z0, context):
        if self.flow is None:
            return z0, z0.new_zeros(z0.shape[0])
        return self.flow(z0, context)

    def embed(self, x):
        """Deterministic embedding: the posterior mean, pushed through the flow at zero noise."""
        mu, _, context = self.encode(x)
        return self._transform_posterior(mu, context)[0]

    def decode(self, z, generator=None, covariates=None):
        """Decoder distribution parameters for latent codes ``z`` (float32, as in :meth:`encode`)
        under encoded ``covariates`` (required when the model has them); dropout as in
        :meth:`encode`."""
        hidden, output = self.decoder
        if self.n_covariates:
            z = torch.cat([z, covariates.to(z.dtype)], dim=1)
        return output(hidden(z, generator)).float()

    def decode_mean(self, z, library_size=None, covariates=None):
        """Decoder mean in the original data scale; for counts, at ``library_size``
        (default: the likelihood's)."""
        params = self.decode(z, covariates=covariates)
        if library_size is None:
            return self.likelihood.mean(params)
        return self.likelihood.mean(params, library_size)

    def decode_inputs(self, rows, library_size=None):
        """:meth:`decode_mean` of rows of latent codes followed by encoded covariates."""
        return self.decode_mean(rows[:, : self.n_latent], library_size, rows[:, self.n_latent :])

    def decode_params(self, rows):
        """:meth:`decode` of rows of latent codes followed by encoded covariates."""
        return self.decode(rows[:, : self.n_latent], covariates=rows[:, self.n_latent :])

    def forward(self, x, loss=LossSettings(), eps=None, neighbors=None, weights=None, generator=None):
        """One stochastic pass: sample z ~ q(z|x), decode, and return a :class:`VAEOutput`.

        ``loss`` (a :class:`LossSettings`) says how the loss weighs the KL term and what it
        adds. ``eps`` (standard normal noise of shape ``(batch, n_latent)``) may be given to
        make the pass deterministic; by default it is drawn from ``generator``, as are the
        dropout masks and the neighbour term's negatives (torch's default generator when
        ``None``).
        ``neighbors`` (data-space nearest neighbours of the rows of ``x``: one block of
        ``len(x)`` rows per neighbour drawn for each row) adds ``loss.neighbor_weight``
        times the neighbour objective of the pairs (:mod:`cvae.nn.neighbor_loss`), summed over
        a row's pairs: each pair counts as much however many a row has. ``weights`` (one
        per row, shape ``(batch,)``) weigh each row's terms in the loss, which is then the
        batch mean of the weighted terms.
        """
        if neighbors is None:
            mu, log_var, context = self.encode(x, generator)
        else:
            mu_both, log_var_both, context_both = self.encode(torch.cat([x, neighbors]), generator)
            n = len(x)
            mu, log_var, context = mu_both[:n], log_var_both[:n], context_both[:n]
        if eps is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        out = self._sample_terms(x, mu, log_var, context, eps, loss.beta, loss.free_bits, weights, generator,
                                 loss.reconstruction_fraction)
        if neighbors is not None:
            embedding = self._transform_posterior(mu_both, context_both)[0]
            gather = {} if loss.gather is None else {"gather": loss.gather}
            term = NEIGHBOR_OBJECTIVES[loss.neighbor_objective](embedding[:n], embedding[n:], weights=weights,
                                                                generator=generator, **gather)
            out.loss = out.loss + loss.neighbor_weight * term
        return out

    def mean_elbo(self, x, draws):
        """Per-sample ELBO averaged over fixed noise ``draws`` of shape ``(k, n_latent)``.

        The same draws serve every row; ``x`` is encoded once and decoded ``k`` times.
        """
        mu, log_var, context = self.encode(x)
        total = torch.zeros(len(x), device=x.device)
        for eps in draws:
            total += self._sample_terms(x, mu, log_var, context, eps.expand_as(mu), 1.0).elbo
        return total / len(draws)

    def importance_weighted_bound(self, x, draws, max_rows=4096):
        """Per-sample importance-weighted bound on log p(x) over noise ``draws`` ``(k, n_latent)``.

        ``log (1/k) sum_i p(x, z_i) / q(z_i | x)`` with ``z_i`` from the posterior, flow
        included (Burda, Grosse and Salakhutdinov, 2016, eq. 8). Its expectation is the
        ELBO for ``k = 1``, never decreases as ``k`` grows, and tends to log p(x). The same
        draws serve every row; ``x`` is encoded once and decoded ``k`` times, in passes of
        at most ``max_rows`` rows.
        """
        mu, log_var, context = self.encode(x)
        n = len(x)
        per_pass = max(1, max_rows // max(n, 1))
        total = None
        for start in range(0, len(draws), per_pass):
            eps = draws[start : start + per_pass]
            c = len(eps)
            tiled = [t.repeat(c, 1) for t in (x, mu, log_var, context)]
            log_weight = self._log_weight(*tiled, eps.repeat_interleave(n, dim=0))
            log_weight = torch.logsumexp(log_weight.view(c, n), dim=0)
            total = log_weight if total is None else torch.logaddexp(total, log_weight)
        return total - math.log(len(draws))

    def _log_weight(self, x, mu, log_var, context, eps):
        """log p(x | z) + log p(z) - log q(z | x) at ``z`` = the posterior sample of ``eps``."""
        z0 = mu + eps * torch.exp(0.5 * log_var)
        z, log_det = self._transform_posterior(z0, context)
        log_q = -0.5 * (_LOG_2PI + log_var + eps.square()).sum(dim=1) - log_det
        data, covariates = self.split(x)
        log_likelihood = self.likelihood.log_prob(self.decode(z, covariates=covariates), data)
        return log_likelihood + _standard_normal_log_prob(z) - log_q

    def _sample_terms(self, x, mu, log_var, context, eps, beta, free_bits=0.0, weights=None, generator=None,
                      fraction=1.0):
        z0 = mu + eps * torch.exp(0.5 * log_var)
        z, log_det = self._transform_posterior(z0, context)
        if self.flow is None:
            # Closed-form KL(N(mu, sigma^2) || N(0, I)), Kingma & Welling (2014), Appendix B.
            kl_per_dim = 0.5 * (mu.square() + log_var.exp() - 1 - log_var)
            kl = kl_per_dim.sum(dim=1)
        else:
            # log q(z_K|x) = log q(z_0|x) - sum_k log|det dz_k/dz_{k-1}|
            log_q0 = -0.5 * (_LOG_2PI + log_var + eps.square()).sum(dim=1)
            kl = log_q0 - log_det - _standard_normal_log_prob(z)
            kl_per_dim = None  # the flow mixes dimensions: only the total is known
        scored_x, scored_z, scored_weights = x, z, weights
        if fraction < 1:  # the reconstruction of the batch's first rows only
            m = max(1, math.ceil(fraction * len(x)))
            scored_x, scored_z = x[:m], z[:m]
            scored_weights = None if weights is None else weights[:m]
        data, covariates = self.split(scored_x)
        log_likelihood = self.likelihood.log_prob(self.decode(scored_z, generator, covariates), data)
        if weights is not None:
            kl_w, ll_w = kl * weights, log_likelihood * scored_weights
            kl_per_dim = None if kl_per_dim is None else kl_per_dim * weights[:, None]
        else:
            kl_w, ll_w = kl, log_likelihood
        if free_bits:
            loss = beta * _free_bits_kl(kl_w, kl_per_dim, free_bits, mu.shape[1]) - ll_w.mean()
        elif scored_x is x:  # one mean of the sum: the rounding every model was trained with
            loss = (beta * kl_w - ll_w).mean()
        else:
            loss = beta * kl_w.mean() - ll_w.mean()
        return VAEOutput(loss=loss, log_likelihood=log_likelihood, kl=kl, z=z)


def _free_bits_kl(kl, kl_per_dim, free_bits, n_latent):
    """The batch-mean KL with each dimension's share held at ``free_bits`` nats or more.

    With a flow the dimensions are not separable, so the total is held at
    ``free_bits * n_latent`` instead.
    """
    if kl_per_dim is None:
        return torch.clamp(kl.mean(), min=free_bits * n_latent)
    return torch.clamp(kl_per_dim.mean(dim=0), min=free_bits).sum()


# Bounds on the first hidden layer's default width (see default_hidden_sizes), measured on
# digits: benchmarks/README.md, "Time to quality".
MIN_WIDTH = 128
NEIGHBOR_MIN_WIDTH = 256
MAX_WIDTH = 1024


def default_hidden_sizes(n_features, n_components, neighbors=False):
    """Encoder widths used when the user gives none.

    Three layers that halve. The first is the power of two at or below ``n_features``,
    clipped to [128, 1024] so small inputs still get a usable network and huge inputs a
    bounded cost; with ``neighbors`` (the neighbour term is on), to [256, 1024], as an
    encoder that must also keep data-space neighbours together needs the width on small
    inputs. Each next layer is half the previous one, but at least the power of two at or
    above ``4 * n_components`` so a wide latent space is not starved. Powers of two keep
    matrix products on their fastest kernels: ``[512, 256, 128]`` for MNIST's 784
    features, ``[128, 64, 32]`` for the 64-pixel digits (``[256, 128, 64]`` with the
    neighbour term). docs/design.md gives the reasons.
    """
    first = 1 << (max(n_features, 1).bit_length() - 1)
    first = min(max(first, NEIGHBOR_MIN_WIDTH if neighbors else MIN_WIDTH), MAX_WIDTH)
    floor = 1 << max(4 * n_components - 1, 1).bit_length()
    return [max(first >> k, floor) for k in range(3)]


def load_weights(module, state_dict):
    """``module.load_state_dict(state_dict)``, strict, except that entries for the module's
    non-persistent buffers are ignored: checkpoints written before the normalization
    statistics lived only in the run specification hold them."""
    buffers = {name for name, _ in module.named_buffers()}
    saved = module.state_dict().keys()
    module.load_state_dict({k: v for k, v in state_dict.items() if k in saved or k not in buffers})
