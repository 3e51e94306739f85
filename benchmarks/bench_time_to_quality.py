"""Quality against time: PCA, UMAP and CompressionVAE settings, side by side in one run.

For each dataset (scikit-learn's digits, 75/25 split; MNIST with ``--data``) and method, a
2-D embedding is fitted and scored on the test rows: 10-NN accuracy (classifier fitted on
the train embedding), trustworthiness(10) on up to 5,000 test rows, reconstruction MSE in
[0, 1] scale where the method decodes, and fit seconds; with ``--train-trust``, also
trustworthiness(10) on the first 5,000 training rows. VAE rows with the ``"adaptive"``
schedule are fitted in stages of ``--stage-steps`` steps with ``warm_start`` (which
continues a run exactly) and scored after each stage: the JSON holds the curve of quality
against fit seconds (scoring time excluded), and a row ends when the fit stops by its own
rule. A ``"cosine"`` or ``"constant"`` schedule is a function of ``max_steps``, so those
rows (the defaults among them) are fitted once. UMAP joins when ``umap-learn`` is
installed (``pip install 'cvae[bench]'``).

Usage::

    python benchmarks/bench_time_to_quality.py --data ../shared/datasets/mnist.npz \\
        --out benchmarks/results/time_to_quality.json

``--methods`` picks rows: ``pca``, ``umap``, ``vae`` (defaults), ``vae-early`` (defaults
with ``n_iter_no_change=--patience``), ``plateau`` (the defaults before issue #10: the
``"adaptive"`` schedule at batch 128), ``neighbours`` (``neighbor_weight=0.4,
neighbor_objective="tsne"``), ``neighbours-early`` and ``neighbours-plateau``. ``--setting
NAME JSON`` adds a VAE row of its own parameters, for example a budget to compare with
the defaults::

    python benchmarks/bench_time_to_quality.py --data ../shared/datasets/mnist.npz --datasets mnist \
        --methods vae --setting short '{"max_steps": 4000}'
"""

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).parent))

import bench_neighbors  # noqa: E402

from cvae import CompressionVAE  # noqa: E402
from cvae.training.run import step_budget  # noqa: E402

# The defaults before issue #10: a plateau schedule at batch 128 (the rate divided by 5
# after 5 validations without improvement, until it falls below 1e-5), and with the
# neighbour option 3 neighbours drawn per row and step.
PLATEAU = {"batch_size": 128, "learning_rate": "adaptive", "learning_rate_init": 1e-3}
NEIGHBOURS = {"neighbor_weight": 0.4, "neighbor_objective": "tsne"}
VAE_SETTINGS = {
    "vae": {},
    "vae-early": {"early": True},
    "plateau": PLATEAU,
    "neighbours": NEIGHBOURS,
    "neighbours-early": {**NEIGHBOURS, "early": True},
    "neighbours-plateau": {**NEIGHBOURS, **PLATEAU, "neighbor_samples": 3},
}


def machine():
    """The CPU, and whether it multiplies bfloat16 natively."""
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line), "")
        flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    except OSError:
        model = platform.processor()
    import torch

    return {"cpu": model or platform.processor(), "platform": platform.platform(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "amx": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}


def write_json(path, document):
    """Write ``document`` to ``path`` (its folder created), when a path is given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(document, indent=1))


def score(Z_train, Z_test, X_test, y_train, y_test, X_hat=None, X_train=None):
    """Test 10-NN accuracy, test trustworthiness(10) and MSE; with ``X_train``, also the
    trustworthiness of the first training rows' embedding."""
    knn = KNeighborsClassifier(10).fit(Z_train, y_train).score(Z_test, y_test)
    rows = slice(0, bench_neighbors.TRUST_ROWS)
    trust = trustworthiness(X_test[rows], Z_test[rows], n_neighbors=10)
    mse = None if X_hat is None else float(np.mean((X_hat - X_test) ** 2))
    row = {"knn": float(knn), "trustworthiness": float(trust), "mse": mse}
    if X_train is not None:
        row["train_trustworthiness"] = float(trustworthiness(X_train[rows], Z_train[rows], n_neighbors=10))
    return row


def fit_vae(setting, X_train, X_test, y_train, y_test, args):
    """A VAE fitted in stages, scored after each; returns the last row and the curve.

    Only the ``"adaptive"`` schedule is fitted in stages: the others are functions of
    ``max_steps``, so stopping at a stage would change their course; they are fitted once.
    """
    params = {k: v for k, v in setting.items() if k != "early"}
    if setting.get("early"):
        params["n_iter_no_change"] = args.patience
    vae = CompressionVAE(n_components=2, random_state=args.seed, **params)
    if args.max_steps:
        vae.set_params(max_steps=args.max_steps)
    staged = vae.learning_rate == "adaptive"
    curve, seconds, limit = [], 0.0, step_budget(vae.get_params(), len(X_train))
    while True:
        if staged:
            vae.set_params(max_steps=min(vae.n_steps_ + args.stage_steps if curve else args.stage_steps, limit),
                           warm_start=bool(curve))
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vae.fit(X_train)
        seconds += time.perf_counter() - started
        Z_test = vae.transform(X_test)
        row = score(vae.transform(X_train), Z_test, X_test, y_train, y_test, vae.inverse_transform(Z_test),
                    X_train if args.train_trust else None)
        curve.append({"seconds": seconds, "steps": vae.n_steps_, **row})
        if not staged or vae.stop_reason_ != "max_steps" or vae.n_steps_ >= limit:
            break
    return {**curve[-1], "fit_seconds": seconds, "stop_reason": vae.stop_reason_, "curve": curve}


def fit_other(method, X_train, X_test, y_train, y_test, args):
    if method == "pca":
        model = PCA(2, random_state=args.seed)
    else:
        import umap

        model = umap.UMAP(random_state=args.seed)
    started = time.perf_counter()
    Z_train = model.fit_transform(X_train)
    seconds = time.perf_counter() - started
    Z_test = model.transform(X_test)
    X_hat = model.inverse_transform(Z_test) if method == "pca" else None
    row = score(Z_train, Z_test, X_test, y_train, y_test, X_hat, X_train if args.train_trust else None)
    return {**row, "fit_seconds": seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mnist.npz (default: digits only)")
    parser.add_argument("--methods", nargs="+", default=["pca", "umap", "vae", "vae-early", "neighbours",
                                                         "neighbours-early"])
    parser.add_argument("--patience", type=int, default=5, help="n_iter_no_change of the -early rows")
    parser.add_argument("--stage-steps", type=int, default=2500, help="steps between two scorings of a VAE")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on VAE steps (default: the estimator's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist"], help="which of the loaded datasets")
    parser.add_argument("--setting", nargs=2, action="append", default=[], metavar=("NAME", "JSON"),
                        help="a VAE row with these parameters (repeatable); add NAME to --methods' rows")
    parser.add_argument("--train-trust", action="store_true",
                        help="also score trustworthiness(10) on the first training rows")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    try:
        import umap  # noqa: F401
    except ImportError:
        args.methods = [m for m in args.methods if m != "umap"]
    settings = dict(VAE_SETTINGS)
    for name, parameters in args.setting:
        settings[name] = json.loads(parameters)
        if name not in args.methods:
            args.methods.append(name)
    results = {}
    for name, (X_train, X_test, y_train, y_test) in bench_neighbors.load_datasets(args.data).items():
        if name not in args.datasets:
            continue
        results[name] = {}
        for method in args.methods:
            if method in settings:
                row = fit_vae(settings[method], X_train, X_test, y_train, y_test, args)
            else:
                row = fit_other(method, X_train, X_test, y_train, y_test, args)
            results[name][method] = row
            print(f"{name:7s} {method:17s} 10-NN {row['knn']:.3f}  trust {row['trustworthiness']:.3f}  "
                  f"MSE {row['mse'] if row['mse'] is None else round(row['mse'], 4)}  fit {row['fit_seconds']:7.1f} s"
                  + (f"  {row['steps']} steps ({row['stop_reason']})" if "steps" in row else "")
                  + (f"  train trust {row['train_trustworthiness']:.3f}" if args.train_trust else ""), flush=True)
    document = {"machine": machine(), "args": vars(args), "results": results}
    write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
