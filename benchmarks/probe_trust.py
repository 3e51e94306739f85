"""Why the neighbour option's test trustworthiness stays below UMAP's: four changes to the
package that no parameter reaches, each tried on ``bench_time_to_quality.py``'s rows.

``--scale S`` measures the ``"tsne"`` objective's distances after multiplying the embedding
by ``S`` instead of 3; ``--exact-graph`` searches neighbours among all features however many
rows there are, instead of among 50 principal components above 10,000 rows;
``--interpolate H`` replaces each training neighbour ``x_j`` of a row ``x_i`` by
``x_j + u (x_i - x_j)``, ``u`` uniform in ``[0, H]``, so that the encoder also sees points
between neighbours (validation is unchanged); ``--weight-decay W`` trains with AdamW's
decoupled weight decay ``W`` (each step shrinks the weights by ``W`` times the learning
rate) instead of Adam, a smoother map for unseen rows if the gap is overfitting;
``--input-dropout P`` trains a denoising encoder: in training passes each standardized input
feature of the encoder (the rows' and their neighbours') is set to 0, the data's mean, with
probability ``P`` (Vincent et al. 2008; covariate columns too), while the reconstruction
is still scored on the clean rows. The
changes are made in this process only (the package is not edited); the other arguments go
to ``bench_time_to_quality.py``, and the JSON it writes gains a ``"probe"`` entry naming
the change.

Usage (the runs in benchmarks/README.md, "Test trustworthiness of the neighbour option")::

    python benchmarks/probe_trust.py --exact-graph --data ../shared/datasets/mnist.npz \\
        --datasets mnist --methods pca --train-trust \\
        --setting neighbours-bf16 '{"neighbor_weight": 0.4, "neighbor_objective": "tsne", "precision": "bfloat16"}' \\
        --out benchmarks/results/trust_probe_exact_graph.json
"""

import argparse
import functools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import bench_time_to_quality  # noqa: E402

import cvae.neighbors.search  # noqa: E402
import cvae.training.run  # noqa: E402
from cvae.nn import neighbor_loss as neighbors, vae  # noqa: E402


def interpolate_neighbors(high):
    """Make training passes of the VAE see neighbours moved towards their rows."""
    forward = vae.VAE.forward

    def moved(self, x, loss=vae.LossSettings(), eps=None, neighbors=None, weights=None, generator=None):
        if neighbors is not None and self.training:
            rows = x.repeat(len(neighbors) // len(x), 1)
            u = high * torch.rand(len(neighbors), 1, generator=generator, device=x.device, dtype=neighbors.dtype)
            neighbors = neighbors + u * (rows - neighbors)
        return forward(self, x, loss, eps=eps, neighbors=neighbors, weights=weights, generator=generator)

    vae.VAE.forward = moved


def drop_inputs(p):
    """Make every VAE built in this process encode, in training passes, its rows with each
    encoder input (standardized, so 0 is the data's mean) dropped with probability ``p``."""
    init = vae.VAE.__init__

    def with_dropped_inputs(self, *args, **kwargs):
        init(self, *args, **kwargs)

        def drop(module, inputs):
            if not module.training:
                return None
            generator = inputs[1] if len(inputs) > 1 else None
            keep = torch.rand(inputs[0].shape, generator=generator, device=inputs[0].device) >= p
            return (inputs[0] * keep.to(inputs[0].dtype),) + tuple(inputs[1:])

        self.encoder.register_forward_pre_hook(drop)

    vae.VAE.__init__ = with_dropped_inputs


def decay_weights(weight_decay):
    """Make every fit in this process train with AdamW's decoupled weight decay."""
    def adamw(params, lr):
        return torch.optim.AdamW(list(params), lr=lr, weight_decay=weight_decay)

    cvae.training.run.make_adam = adamw


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=False)
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument("--exact-graph", action="store_true")
    parser.add_argument("--interpolate", type=float, default=None)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--input-dropout", type=float, default=None)
    probe, rest = parser.parse_known_args(argv)
    if probe.scale is not None:
        neighbors.NEIGHBOR_OBJECTIVES["tsne"] = functools.partial(neighbors.contrastive_neighbor_loss,
                                                                  scale=probe.scale)
    if probe.exact_graph:
        cvae.neighbors.search.EXACT_NEIGHBOR_ROWS = sys.maxsize
    if probe.interpolate is not None:
        interpolate_neighbors(probe.interpolate)
    if probe.weight_decay is not None:
        decay_weights(probe.weight_decay)
    if probe.input_dropout is not None:
        drop_inputs(probe.input_dropout)
    document = bench_time_to_quality.main(rest)
    document["probe"] = vars(probe)
    out = document["args"]["out"]
    bench_time_to_quality.write_json(out, document)
    return document


if __name__ == "__main__":
    main()
