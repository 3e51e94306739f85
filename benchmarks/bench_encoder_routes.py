"""Routes to an encoder whose own map embeds unseen rows as well as the default ``transform``.

For each dataset (``bench_time_to_quality.DATASETS``) the defaults are fitted once. Then,
each from the fitted weights, the routes train the encoder (or a new map) after the fit to
give the neighbour placement's answer (``transform``'s default) on rows around the
training rows, and are scored on the test rows by 10-NN accuracy and trustworthiness(10)
(as in ``bench_time_to_quality.py``):

- ``placement``: the default ``transform`` (the target);
- ``encoder``: the fit's encoder as it is (``placement="encoder"``);
- ``distill-mix``: the encoder (its layers, posterior and flow; the decoder is not used)
  trained for ``--steps`` Adam steps (cosine decay from ``--lr``) on the mean squared
  distance to the placement of the training rows and of ``--augment`` rows per training
  row, each a random point between a training row and one of its 15 nearest;
- ``distill-noise-S``: the same rows with Gaussian noise of S times each feature's standard
  deviation added (consistency under input noise: a row and its perturbed copies are
  asked for nearby places, the placement's);
- ``student-pcs``: a new 2-hidden-layer MLP on the placement's search space (at most 50
  principal components), trained on the same targets with noise 0.5 in that space.

Usage::

    python benchmarks/bench_encoder_routes.py --data mnist.npz --datasets digits mnist-5k mnist-20k \\
        --out benchmarks/results/encoder_routes.json
"""

import argparse
import copy
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import DATASETS, dense, load_dataset, machine, score, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402

NOISES = (0.0, 0.5, 1.0)


def augmented(rows, n_copies, noise, scale, generator):
    """``rows`` and ``n_copies`` of each moved a uniform fraction towards one of its 15
    nearest rows, plus Gaussian noise of ``noise * scale``."""
    neighbors = NearestNeighbors(n_neighbors=16).fit(rows.numpy()).kneighbors(rows.numpy(), return_distance=False)
    neighbors = torch.from_numpy(neighbors[:, 1:])
    out = [rows]
    for _ in range(n_copies):
        other = rows[neighbors[torch.arange(len(rows)), torch.randint(0, 15, (len(rows),), generator=generator)]]
        moved = rows + torch.rand(len(rows), 1, generator=generator) * (other - rows)
        out.append(moved + noise * scale * torch.randn(moved.shape, generator=generator))
    return torch.cat(out)


def train(module, parameters, inputs, targets, args, generator):
    """``--steps`` Adam steps of ``module`` on the mean squared distance to ``targets``."""
    optimizer = torch.optim.Adam(parameters, lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    for _ in range(args.steps):
        batch = torch.randint(0, len(inputs), (args.batch_size,), generator=generator)
        loss = (module(inputs[batch]) - targets[batch]).square().sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return float(loss.detach())


def routes(vae, X_train, args):
    """route -> (function embedding rows, seconds of its training after the fit)."""
    reference, module = vae._reference, vae.module_
    standardize = module.likelihood.standardize
    placer = reference.placer(vae.n_neighbors)
    X = torch.from_numpy(np.ascontiguousarray(dense(X_train), dtype=np.float32))
    found = {"placement": (vae.set_params(placement="auto").transform, 0.0),
             "encoder": (copy.deepcopy(vae).set_params(placement="encoder").transform, 0.0)}
    for noise in NOISES:
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(args.seed)
        inputs = augmented(X, args.augment, noise, module.likelihood.scale, generator)
        with torch.inference_mode():
            targets = torch.cat([placer(standardize(rows)) for rows in inputs.split(512)]).clone()
        student = copy.deepcopy(module).train()
        parameters = [p for name, p in student.named_parameters() if not name.startswith("decoder")]
        train(student.embed, parameters, inputs, targets, args, generator)
        student.eval()
        found["distill-mix" if noise == 0 else f"distill-noise-{noise}"] = (
            lambda rows, student=student: student.embed(torch.from_numpy(np.asarray(dense(rows), np.float32)))
            .detach().numpy(), time.perf_counter() - started)
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    space = reference.rows
    inputs = augmented(space, args.augment, 0.5, space.std(dim=0), generator)
    with torch.inference_mode():
        targets = torch.cat([_place_in_space(placer, rows) for rows in inputs.split(512)]).clone()
    mean, std = inputs.mean(dim=0), inputs.std(dim=0).clamp_min(1e-6)  # constant columns stay 0
    width = 256
    net = torch.nn.Sequential(torch.nn.Linear(space.shape[1], width), torch.nn.ReLU(), torch.nn.Linear(width, width),
                              torch.nn.ReLU(), torch.nn.Linear(width, vae.n_components))
    train(lambda rows: net((rows - mean) / std), list(net.parameters()), inputs, targets, args, generator)

    def student_map(rows):
        with torch.no_grad():
            projected = reference.project(standardize(torch.from_numpy(np.asarray(dense(rows), np.float32))))
            return net((projected - mean) / std).numpy()

    found["student-pcs"] = (student_map, time.perf_counter() - started)
    return found


def _place_in_space(placer, rows):
    """The placement of rows already in the search space (projected)."""
    components = placer.components
    placer.components = None
    try:
        return placer(rows)
    finally:
        placer.components = components


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mnist.npz, for the MNIST datasets")
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=DATASETS)
    parser.add_argument("--augment", type=int, default=10, help="augmented rows per training row")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--max-steps", type=int, default=None, help="cap on the fit's steps (default: auto)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    results = {}
    for name in args.datasets:
        X_train, X_test, y_train, y_test = load_dataset(name, args.data, args.seed)
        params = {} if args.max_steps is None else {"max_steps": args.max_steps}
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vae = CompressionVAE(random_state=args.seed, **params).fit(X_train)
        results[name] = {"fit_seconds": time.perf_counter() - started}
        for route, (embed, seconds) in routes(vae, X_train, args).items():
            row = score(embed(X_train), embed(X_test), X_test, y_train, y_test)
            row = {"knn": row["knn"], "trustworthiness": row["trustworthiness"], "seconds_after_fit": seconds}
            results[name][route] = row
            print(f"{name:9s} {route:16s} 10-NN {row['knn']:.3f}  trust {row['trustworthiness']:.3f}  "
                  f"{seconds:6.1f} s after the fit", flush=True)
        write_json(args.out, {"machine": machine(), "args": vars(args), "results": results})
    return results


if __name__ == "__main__":
    main()
