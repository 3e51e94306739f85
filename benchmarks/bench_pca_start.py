"""Does a start from a good layout let a fit take fewer steps? (issue 52, item 2, first route)

UMAP starts its layout from a spectral embedding; this tries the analogue for the encoder:
before training, the encoder's map is fitted (mean squared error, Adam, ``--pretrain-steps``
batches of 512 training rows) to the rows' first two principal components, scaled to the
spread of the default fit's embedding. Then the usual training runs for a fraction of the
default budget (``--fractions`` of ``max_steps="auto"``), with its cosine schedule. Each
fraction also runs without the start, and the default fit stands beside them, all with
seed 0 and scored as the headline is (test 10-NN, trustworthiness(10)); UMAP (seeded,
warm) too when installed. The start is injected into a one-step fit's checkpoint and the
fit is continued (``warm_start``): an experiment, not a feature; its time (the one-step
fit, whose graph is searched again by the continued fit, and the pre-training) counts.

Usage::

    python benchmarks/bench_pca_start.py --data ../shared/datasets/mnist.npz \\
        --datasets mnist-5k mnist-20k --out benchmarks/results/pca_start.json
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

sys.path.insert(0, str(Path(__file__).parent))
from bench_time_to_quality import load_dataset, machine, score, warm_umap, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402


def fitted(X, **params):
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = CompressionVAE(random_state=0, **params).fit(X)
    return vae, time.perf_counter() - started


def pca_started(X, steps, spread, pretrain_steps, seed=0):
    """A fit of ``steps`` steps whose encoder first learns the 2-D principal components of
    ``X`` scaled to ``spread`` (per-axis standard deviation); with its total seconds."""
    started = time.perf_counter()
    vae, _ = fitted(X, max_steps=1)
    module = vae.module_.train()
    target = PCA(2, random_state=seed).fit_transform(X)
    target = torch.from_numpy((target / target.std(axis=0) * spread).astype(np.float32))
    rows = torch.from_numpy(np.asarray(X, dtype=np.float32))
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(pretrain_steps):
        batch = torch.randint(len(rows), (512,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(module.embed(rows[batch]), target[batch]).backward()
        optimizer.step()
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    vae._checkpoint = dict(vae._checkpoint, model=state, best_model=state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.set_params(warm_start=True, max_steps=steps).fit(X)
    return vae, time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--datasets", nargs="+", default=["digits"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = []
    print(f"{'data':<10} {'run':<22} {'steps':>6} {'fit s':>7} {'10-NN':>6} {'trust':>6}")
    for name in args.datasets:
        X_train, X_test, y_train, y_test = load_dataset(name, args.data)
        X_train, X_test = (np.asarray(a, dtype=np.float32) for a in (X_train, X_test))

        def record(run, vae, seconds, steps):
            row = {"data": name, "run": run, "steps": steps, "fit_seconds": seconds,
                   **score(vae.transform(X_train), vae.transform(X_test), X_test, y_train, y_test)}
            rows.append(row)
            print(f"{name:<10} {run:<22} {steps:>6} {seconds:>7.1f} {row['knn']:>6.3f} {row['trustworthiness']:>6.3f}",
                  flush=True)

        if warm_umap():  # umap-learn is an optional benchmark dependency
            import umap

            started = time.perf_counter()
            model = umap.UMAP(random_state=0)
            Z_train = model.fit_transform(X_train)
            seconds = time.perf_counter() - started
            row = {"data": name, "run": "umap (seeded, warm)", "fit_seconds": seconds,
                   **score(Z_train, model.transform(X_test), X_test, y_train, y_test)}
            rows.append(row)
            print(f"{name:<10} {'umap (seeded, warm)':<22} {'':>6} {seconds:>7.1f} {row['knn']:>6.3f} "
                  f"{row['trustworthiness']:>6.3f}", flush=True)
        default, seconds = fitted(X_train)
        budget = default.max_steps_
        record("default", default, seconds, budget)
        spread = float(np.linalg.norm(default.embedding_.std(axis=0)) / np.sqrt(2))
        for fraction in args.fractions:
            steps = max(2, int(budget * fraction))
            vae, seconds = fitted(X_train, max_steps=steps)
            record(f"{fraction:g} of the budget", vae, seconds, steps)
            vae, seconds = pca_started(X_train, steps, spread, args.pretrain_steps)
            record(f"{fraction:g}, PCA start", vae, seconds, steps)
    write_json(args.out, {"machine": machine(), "pretrain_steps": args.pretrain_steps, "rows": rows})


if __name__ == "__main__":
    main()
