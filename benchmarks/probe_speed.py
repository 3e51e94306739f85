"""Issue 52's routes to a cheaper step, two changes to the package that no parameter
reaches, tried on ``bench_time_to_quality.py``'s rows.

``--recon-rows F`` decodes and scores the reconstruction of the first ``ceil(F * n)`` rows
of each training batch of ``n`` (the batch is shuffled, so their mean is an unbiased
estimate of the batch's); the KL term, the encoder and the neighbour term still see every
row, and validation is unchanged. ``--pca-input K`` feeds the encoder the standardized
rows' first ``K`` principal components (fitted at the start of each fit on at most 10,000
of its training rows, a fixed layer saved with the weights) instead of every feature; the
decoder still reconstructs every feature. The changes are made in this process only (the
package is not edited); the other arguments go to ``bench_time_to_quality.py``, and the
JSON it writes gains a ``"probe"`` entry naming the change.

Usage (benchmarks/README.md, "Routes to fewer FLOPs")::

    python benchmarks/probe_speed.py --recon-rows 0.25 --data ../shared/datasets/mnist.npz \\
        --datasets mnist-5k mnist-20k --methods vae --stage-steps 100000 \\
        --out benchmarks/results/speed_probe_recon.json
"""

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

import bench_integration  # noqa: E402
import bench_time_to_quality  # noqa: E402

import cvae.training.lifecycle  # noqa: E402
from cvae.spec import build_module  # noqa: E402
from cvae.data.rows import take_rows  # noqa: E402
from cvae.nn import vae  # noqa: E402
from cvae.nn.init import initialize_weights  # noqa: E402
from cvae.nn.mlp import MLP  # noqa: E402

_PROJECTION = {}  # the current fit's principal components (mean, components), set as it starts


def reconstruct_fewer_rows(fraction):
    """Make training passes of the VAE score the reconstruction of a ``fraction`` of each batch."""
    sample_terms = vae.VAE._sample_terms

    def fewer(self, x, mu, log_var, context, eps, beta, free_bits=0.0, weights=None, generator=None):
        if not self.training or self.flow is not None or free_bits:
            return sample_terms(self, x, mu, log_var, context, eps, beta, free_bits, weights, generator)
        m = max(1, math.ceil(fraction * len(x)))
        kl = (0.5 * (mu.square() + log_var.exp() - 1 - log_var)).sum(dim=1)
        z = mu + eps * (0.5 * log_var).exp()
        data, covariates = self.split(x[:m])
        log_likelihood = self.likelihood.log_prob(self.decode(z[:m], generator, covariates), data)
        kl_w = kl if weights is None else kl * weights
        ll_w = log_likelihood if weights is None else log_likelihood * weights[:m]
        return vae.VAEOutput(loss=beta * kl_w.mean() - ll_w.mean(), log_likelihood=log_likelihood, kl=kl, z=z)

    vae.VAE._sample_terms = fewer


def encode_components(k):
    """Make every VAE built after a fit starts encode its rows' first ``k`` principal components."""
    run_training, init, encode = cvae.training.lifecycle.run_training, vae.VAE.__init__, vae.VAE.encode

    def fitted_components(params, plan, spec, data, *args, **kwargs):
        rows = data.train.indices[np.linspace(0, len(data.train) - 1, min(10_000, len(data.train))).astype(int)]
        model = build_module(spec)
        with torch.no_grad():
            standardized = model.standardize(torch.from_numpy(take_rows(data.train.source, rows))).numpy()
        pca = PCA(k, random_state=0).fit(standardized)
        _PROJECTION.update(mean=torch.from_numpy(pca.mean_).float(),
                           components=torch.from_numpy(pca.components_).float())
        return run_training(params, plan, spec, data, *args, **kwargs)

    def projected_init(self, n_features, n_latent, hidden_sizes, *args, **kwargs):
        init(self, n_features, n_latent, hidden_sizes, *args, **kwargs)
        if _PROJECTION and n_features > k and not self.n_covariates:
            self.register_buffer("pca_mean", _PROJECTION["mean"].clone())
            self.register_buffer("pca_components", _PROJECTION["components"].clone())
            self.encoder = MLP(k, list(hidden_sizes), kwargs.get("dropout", 0.0), kwargs.get("activation", "relu"))
            initialize_weights(self.encoder, kwargs.get("initializer", "orthogonal"))

    def projected_encode(self, x, generator=None):
        if not hasattr(self, "pca_components"):
            return encode(self, x, generator)
        inputs = (self.likelihood.standardize(x) - self.pca_mean) @ self.pca_components.T
        out = self.posterior(self.encoder(inputs, generator)).float()
        n = self.n_latent
        log_var = vae.LOG_VAR_BOUND * torch.tanh(out[:, n : 2 * n] / vae.LOG_VAR_BOUND)
        return out[:, :n], log_var, out[:, 2 * n :]

    cvae.training.lifecycle.run_training = fitted_components
    vae.VAE.__init__, vae.VAE.encode = projected_init, projected_encode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
    parser.add_argument("--recon-rows", type=float, default=None)
    parser.add_argument("--pca-input", type=int, default=None)
    parser.add_argument("--bench", choices=["time_to_quality", "integration"], default="time_to_quality",
                        help="the benchmark run with the change (its other arguments follow)")
    probe, rest = parser.parse_known_args(argv)
    if probe.recon_rows is not None:
        reconstruct_fewer_rows(probe.recon_rows)
    if probe.pca_input is not None:
        encode_components(probe.pca_input)
    if probe.bench == "integration":
        document = {"machine": bench_time_to_quality.machine(), "args": rest, "probe": vars(probe),
                    "rows": bench_integration.main(rest)}
        bench_time_to_quality.write_json(rest[rest.index("--out") + 1] if "--out" in rest else None, document)
        return document
    document = bench_time_to_quality.main(rest)
    document["probe"] = vars(probe)
    bench_time_to_quality.write_json(document["args"]["out"], document)
    return document


if __name__ == "__main__":
    main()
