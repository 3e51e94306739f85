"""Ways to embed unseen rows, side by side on one fitted model per dataset.

For each dataset (``bench_time_to_quality.DATASETS``) the defaults are fitted once and the
test rows embedded by each route, scored by test 10-NN accuracy and trustworthiness(10)
(as in ``bench_time_to_quality.py``) and timed (rows per second of ``transform``):

- ``encoder``: the encoder's posterior mean (``placement="encoder"``);
- ``median``: the median embedding of the row's 15 nearest training rows, no refinement;
- ``sample-512`` / ``sample-4096``: that start refined for 30 Adam steps against a fixed
  sample of 512 or 4,096 training rows (each counted once) as negatives;
- ``grid`` (the default, ``placement="neighbors"``): refined against every training row,
  summed on a grid by FFT (:class:`cvae.neighbors.placement.NeighborReference`);
- ``grid-60-steps``, ``grid-10-neighbours``: the default with 60 steps, or 10 neighbours.

The routes other than ``encoder`` and ``grid`` change module constants of
:mod:`cvae.neighbors.placement` for their call, as no parameter reaches them.

Usage::

    python benchmarks/bench_placement.py --data mnist.npz --datasets digits mnist-5k mnist-20k mnist \\
        --out benchmarks/results/placement.json
"""

import argparse
import functools
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import DATASETS, load_dataset, machine, score, write_json  # noqa: E402

import cvae.neighbors.placement as placement  # noqa: E402
from cvae import CompressionVAE  # noqa: E402


@contextmanager
def patched(**constants):
    """Module constants of cvae.neighbors.placement changed for the duration; ``sample=N`` places
    against a fixed sample of N training rows instead of the grid."""
    sample = constants.pop("sample", None)
    saved = {name: getattr(placement, name) for name in constants}
    field = placement.NeighborReference._field
    for name, value in constants.items():
        setattr(placement, name, value)
    if sample is not None:
        def sampled(self):
            chosen = torch.randperm(len(self.embedding), generator=torch.Generator().manual_seed(0))[:sample]
            points = placement.KERNEL_SCALE * self.embedding[chosen]
            return placement._SampledField(points, len(points))

        sampled = functools.cached_property(sampled)
        sampled.__set_name__(placement.NeighborReference, "_field")
        placement.NeighborReference._field = sampled
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(placement, name, value)
        placement.NeighborReference._field = field


ROUTES = {
    "encoder": ({"placement": "encoder"}, {}),
    "median": ({}, {"REFINE_STEPS": 0}),
    "sample-512": ({}, {"sample": 512}),
    "sample-4096": ({}, {"sample": 4096}),
    "grid": ({}, {}),
    "grid-60-steps": ({}, {"REFINE_STEPS": 60}),
    "grid-10-neighbours": ({"n_neighbors": 10}, {}),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mnist.npz, for the MNIST datasets")
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=DATASETS)
    parser.add_argument("--routes", nargs="+", default=list(ROUTES), choices=list(ROUTES))
    parser.add_argument("--max-steps", type=int, default=None, help="cap on the fit's steps (default: auto)")
    parser.add_argument("--generated-rows", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    results = {}
    for name in args.datasets:
        X_train, X_test, y_train, y_test = load_dataset(name, args.data, args.seed, args.generated_rows)
        params = {} if args.max_steps is None else {"max_steps": args.max_steps}
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vae = CompressionVAE(random_state=args.seed, **params).fit(X_train)
        results[name] = {"fit_seconds": time.perf_counter() - started, "steps": vae.n_steps_}
        Z_train = vae.transform(X_train)
        for route in args.routes:
            changed, constants = ROUTES[route]
            vae.set_params(**{"placement": "auto", "n_neighbors": 15, **changed})
            for cached in ("_field", "_placers"):  # built by the route before
                vae._reference.__dict__.pop(cached, None)
            with patched(**constants):
                started = time.perf_counter()
                Z_test = vae.transform(X_test)
                seconds = time.perf_counter() - started
            row = score(Z_train, Z_test, X_test, y_train, y_test)
            row = {"knn": row["knn"], "trustworthiness": row["trustworthiness"],
                   "rows_per_second": X_test.shape[0] / seconds}
            results[name][route] = row
            print(f"{name:9s} {route:19s} 10-NN {row['knn']:.3f}  trust {row['trustworthiness']:.3f}  "
                  f"{row['rows_per_second']:9.0f} rows/s", flush=True)
    document = {"machine": machine(), "args": vars(args), "results": results}
    write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
