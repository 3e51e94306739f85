"""Embedding quality and cost of CompressionVAE (defaults) against PCA on MNIST.

Prints a table and writes JSON. Metrics, all on the 10k test set:

- fit seconds and transform samples/s;
- 2-D kNN accuracy (k=10, classifier fit on the train embedding, scored on the test one);
- 2-D trustworthiness (k=10, first 5000 test points);
- 10-D reconstruction MSE in [0, 1] pixel scale;
- test log-likelihood bound in nats (CompressionVAE: ELBO, with the Bernoulli likelihood
  that ``likelihood="auto"`` picks for [0, 1] data; PCA: probabilistic PCA's Gaussian
  log-density, printed for reference only: a density of continuous values and a
  Bernoulli likelihood are not on the same scale);
- IAF (``--iaf-length`` steps, default 2) against no flow at the same step budget: test ELBO
  (2-D latent unless ``--iaf-components`` says otherwise), for each seed of ``--iaf-seeds``
  and their mean, on which the target is judged: one training run moves the ELBO by about
  a nat from seed to seed.

Usage::

    python benchmarks/bench_mnist.py --data ../shared/datasets/mnist.npz --iaf-seeds 0 1 2 3 \
        --out benchmarks/results/mnist.json

``--max-steps`` and ``--n-train`` shrink the run for a quick look; the targets are stated
for the full run with defaults.
"""

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness
from sklearn.neighbors import KNeighborsClassifier

from cvae import CompressionVAE

TARGETS = {"knn_2d": 0.82, "trustworthiness_2d": 0.90, "fit_seconds_2d": 600.0, "mse_10d_below_pca": True}


def load_mnist(path, n_train=None):
    data = np.load(path)
    X_train = data["X_train"].reshape(len(data["X_train"]), -1).astype(np.float32) / 255.0
    X_test = data["X_test"].reshape(len(data["X_test"]), -1).astype(np.float32) / 255.0
    y_train, y_test = data["y_train"], data["y_test"]
    if n_train:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    return X_train, y_train, X_test, y_test


def timed_fit(model, X):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    return time.perf_counter() - start


def transform_rate(model, X):
    model.transform(X[:1000])  # warm-up
    start = time.perf_counter()
    model.transform(X)
    return len(X) / (time.perf_counter() - start)


def embedding_quality(model, X_train, y_train, X_test, y_test):
    Z_train, Z_test = model.transform(X_train), model.transform(X_test)
    knn = KNeighborsClassifier(n_neighbors=10).fit(Z_train, y_train).score(Z_test, y_test)
    trust = trustworthiness(X_test[:5000], Z_test[:5000], n_neighbors=10)
    return {"knn_2d": float(knn), "trustworthiness_2d": float(trust)}


def reconstruction_mse(model, X):
    return float(np.mean((model.inverse_transform(model.transform(X)) - X) ** 2))


def iaf_comparison(args, X_train, X_test, vae_kwargs):
    """IAF against no flow at the same step budget (--iaf-steps, constant learning rate so
    both take exactly that many steps), once per seed of --iaf-seeds.

    ``iaf_0`` and ``iaf_on`` hold the means over the seeds; ``per_seed`` each run.
    """
    per_seed = []
    for seed in args.iaf_seeds or [args.seed]:
        runs = {"seed": seed}
        for label, flows in [("iaf_0", 0), ("iaf_on", args.iaf_length)]:
            model = CompressionVAE(args.iaf_components, **dict(vae_kwargs, random_state=seed, max_steps=args.iaf_steps,
                                                               learning_rate="constant"), iaf_flow_length=flows)
            fit_s = timed_fit(model, X_train)
            runs[label] = {"steps": model.n_steps_, "fit_seconds": fit_s, "test_elbo": model.score(X_test)}
            print(f"seed {seed} {label} done: {runs[label]}", flush=True)
        per_seed.append(runs)
    means = {label: {key: float(np.mean([runs[label][key] for runs in per_seed]))
                     for key in ("steps", "fit_seconds", "test_elbo")} for label in ("iaf_0", "iaf_on")}
    return {**means, "per_seed": per_seed}


def run(args):
    X_train, y_train, X_test, y_test = load_mnist(args.data, args.n_train)
    vae_kwargs = {"random_state": args.seed, "neighbor_weight": 0}  # the plain VAE's likelihood
    if args.max_steps:
        vae_kwargs["max_steps"] = args.max_steps
    if args.only_iaf:
        return {"dataset": str(args.data), "n_train": len(X_train), "n_test": len(X_test),
                "iaf_length": args.iaf_length, "iaf_components": args.iaf_components,
                "iaf_same_budget": iaf_comparison(args, X_train, X_test, vae_kwargs)}
    rows = {}

    for name, model in [("PCA", PCA(2, random_state=args.seed)), ("CompressionVAE", CompressionVAE(2, **vae_kwargs))]:
        fit_s = timed_fit(model, X_train)
        row = {"fit_seconds_2d": fit_s, "transform_per_s": transform_rate(model, X_test)}
        row.update(embedding_quality(model, X_train, y_train, X_test, y_test))
        if isinstance(model, CompressionVAE):
            row.update(steps_2d=model.n_steps_, stop_reason_2d=model.stop_reason_, test_elbo_2d=model.score(X_test))
        else:
            row["test_loglik_2d"] = float(model.score(X_test))
        rows[name] = row
        print(f"{name} 2-D done: {row}", flush=True)

    for name, model in [("PCA", PCA(10, random_state=args.seed)), ("CompressionVAE", CompressionVAE(10, **vae_kwargs))]:
        row = rows[name]
        row["fit_seconds_10d"] = timed_fit(model, X_train)
        row["mse_10d"] = reconstruction_mse(model, X_test)
        if isinstance(model, CompressionVAE):
            row.update(steps_10d=model.n_steps_, test_elbo_10d=model.score(X_test))
        print(f"{name} 10-D done: {row}", flush=True)

    iaf_rows = iaf_comparison(args, X_train, X_test, vae_kwargs)

    return {
        "dataset": str(args.data),
        "n_train": len(X_train),
        "n_test": len(X_test),
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
        },
        "targets": TARGETS,
        "methods": rows,
        "iaf_same_budget": iaf_rows,
        "iaf_length": args.iaf_length,
        "iaf_components": args.iaf_components,
    }


def print_iaf(result):
    iaf = result["iaf_same_budget"]
    latent = result.get("iaf_components", 2)
    per_seed = iaf.get("per_seed", [])
    if len(per_seed) > 1:
        print(f"\n{'seed':>6}{'no flow':>10}{'IAF-' + str(result['iaf_length']):>10}{'gain':>8}")
        for runs in per_seed:
            no_flow, flow = runs["iaf_0"]["test_elbo"], runs["iaf_on"]["test_elbo"]
            print(f"{runs['seed']:>6}{no_flow:>10.2f}{flow:>10.2f}{flow - no_flow:>+8.2f}")
    mean = " (mean over seeds)" if len(per_seed) > 1 else ""
    print(f"\nIAF at {iaf['iaf_0']['steps']:.0f} steps, {latent}-D latent: "
          f"test ELBO{mean} {iaf['iaf_0']['test_elbo']:.2f} "
          f"(no flow) vs {iaf['iaf_on']['test_elbo']:.2f} ({result['iaf_length']} IAF steps); fit "
          f"{iaf['iaf_0']['fit_seconds']:.0f}s vs {iaf['iaf_on']['fit_seconds']:.0f}s")
    return {"IAF ELBO > no-flow ELBO": iaf["iaf_on"]["test_elbo"] > iaf["iaf_0"]["test_elbo"]}


def print_table(result):
    if "methods" not in result:
        checks = print_iaf(result)
        print("\ntargets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in checks.items()))
        result["targets_met"] = checks
        return
    pca, vae = result["methods"]["PCA"], result["methods"]["CompressionVAE"]
    lines = [
        ("fit seconds (2-D)", "fit_seconds_2d", "{:.1f}"),
        ("transform samples/s (2-D)", "transform_per_s", "{:,.0f}"),
        ("kNN(10) accuracy (2-D)", "knn_2d", "{:.4f}"),
        ("trustworthiness(10) (2-D)", "trustworthiness_2d", "{:.4f}"),
        ("reconstruction MSE (10-D)", "mse_10d", "{:.4f}"),
        ("fit seconds (10-D)", "fit_seconds_10d", "{:.1f}"),
        ("test ELBO / loglik (2-D)", ("test_loglik_2d", "test_elbo_2d"), "{:.1f}"),
        ("test ELBO (10-D)", (None, "test_elbo_10d"), "{:.1f}"),
    ]
    print(f"\n{'metric':<28}{'PCA':>14}{'CompressionVAE':>16}")
    for label, key, fmt in lines:
        keys = key if isinstance(key, tuple) else (key, key)
        cells = [fmt.format(row[k]) if k in row else "-" for row, k in zip((pca, vae), keys)]
        print(f"{label:<28}{cells[0]:>14}{cells[1]:>16}")
    iaf_check = print_iaf(result)
    checks = {
        "knn_2d >= 0.82": vae["knn_2d"] >= TARGETS["knn_2d"],
        "trustworthiness_2d >= 0.90": vae["trustworthiness_2d"] >= TARGETS["trustworthiness_2d"],
        "fit_seconds_2d < 600": vae["fit_seconds_2d"] < TARGETS["fit_seconds_2d"],
        "mse_10d < PCA": vae["mse_10d"] < pca["mse_10d"],
        **iaf_check,
    }
    print("\ntargets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in checks.items()))
    result["targets_met"] = checks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="MNIST .npz with X_train, y_train, X_test, y_test")
    parser.add_argument("--out", default="benchmarks/results/mnist.json", help="where to write the JSON")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="use only the first N training rows")
    parser.add_argument("--max-steps", type=int, default=None, help="override max_steps (quick runs)")
    parser.add_argument("--iaf-steps", type=int, default=10000, help="step budget of the IAF on/off comparison")
    parser.add_argument("--iaf-length", type=int, default=2, help="IAF steps of the flow model in that comparison")
    parser.add_argument("--iaf-components", type=int, default=2, help="latent dimension of that comparison")
    parser.add_argument("--iaf-seeds", type=int, nargs="+", default=None,
                        help="seeds of that comparison, judged on the mean (default: --seed)")
    parser.add_argument("--only-iaf", action="store_true", help="run only the IAF on/off comparison")
    args = parser.parse_args(argv)
    result = run(args)
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
