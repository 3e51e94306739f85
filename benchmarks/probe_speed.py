"""Issue 52's route to a cheaper step that no parameter reaches (the reconstruction on fewer
rows is ``reconstruction_fraction``), tried on ``bench_time_to_quality.py``'s or
``bench_integration.py``'s rows.

``--pca-input K`` feeds the encoder the standardized
rows' first ``K`` principal components (fitted at the start of each fit on at most 10,000
of its training rows, a fixed layer saved with the weights) instead of every feature; the
decoder still reconstructs every feature. The change is made in this process only (the
package is not edited); the other arguments go to the benchmark (``--bench``), and the
JSON it writes gains a ``"probe"`` entry naming the change.

Usage (benchmarks/README.md, "Routes to fewer FLOPs")::

    python benchmarks/probe_speed.py --pca-input 50 --data ../shared/datasets/mnist.npz \\
        --datasets mnist-5k mnist-20k --methods vae --stage-steps 100000 \\
        --out benchmarks/results/speed_probe_pca.json
"""

import argparse
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
            generator = kwargs.get("generator")  # the model's own, after the weights it drew
            self.encoder = MLP(k, list(hidden_sizes), kwargs.get("dropout", 0.0), kwargs.get("activation", "relu"),
                               generator)
            initialize_weights(self.encoder, kwargs.get("initializer", "orthogonal"), generator)

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
    parser.add_argument("--pca-input", type=int, default=None)
    parser.add_argument("--bench", choices=["time_to_quality", "integration"], default="time_to_quality",
                        help="the benchmark run with the change (its other arguments follow)")
    probe, rest = parser.parse_known_args(argv)
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
