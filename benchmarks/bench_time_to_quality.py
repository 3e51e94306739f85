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
installed (``pip install umap-learn``).

Usage::

    python benchmarks/bench_time_to_quality.py --data ../shared/datasets/mnist.npz \\
        --out benchmarks/results/time_to_quality.json

``--methods`` picks rows: ``pca``, ``umap`` (seeded with ``--seed``: one thread),
``umap-unseeded`` (no seed: umap-learn's parallel code, as users who do not seed meet it),
``vae`` (defaults), ``vae-early`` (defaults
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
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.manifold import trustworthiness
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).parent))

import bench_neighbors  # noqa: E402

from cvae import CompressionVAE  # noqa: E402
from cvae.datasets import make_counts, make_documents  # noqa: E402
from cvae.training.run import step_budget  # noqa: E402

# The defaults before issue #10: a plateau schedule at batch 128 (the rate divided by 5
# after 5 validations without improvement, until it falls below 1e-5), and with the
# neighbour option 3 neighbours drawn per row and step.
PLATEAU = {"batch_size": 128, "learning_rate": "adaptive", "learning_rate_init": 1e-3}
NEIGHBOURS = {"neighbor_weight": 0.4, "neighbor_objective": "tsne"}
VAE_SETTINGS = {
    "vae": {},
    "plain": {"neighbor_weight": 0},
    "vae-early": {"early": True},
    "plateau": PLATEAU,
    "neighbours": NEIGHBOURS,
    "neighbours-early": {**NEIGHBOURS, "early": True},
    "neighbours-plateau": {**NEIGHBOURS, **PLATEAU, "neighbor_samples": 3},
}


# Datasets by name: digits and MNIST subsets (the first rows of MNIST's training and test
# sets), generated single-cell-like counts and generated TF-IDF text.
DATASETS = ("digits", "mnist-5k", "mnist-20k", "mnist", "counts", "text")
MNIST_ROWS = {"mnist-5k": (5000, 2000), "mnist-20k": (20000, 5000), "mnist": (60000, 10000)}


def load_dataset(name, path, seed=0, generated_rows=6000):
    """``(X_train, X_test, y_train, y_test)`` of a dataset of ``DATASETS``; MNIST from ``path``;
    ``generated_rows`` rows of counts or text, a third of them test rows."""
    if name == "digits":
        return bench_neighbors.load_datasets(None)["digits"]
    if name in MNIST_ROWS:
        X_train, X_test, y_train, y_test = bench_neighbors.load_datasets(path)["mnist"]
        n_train, n_test = MNIST_ROWS[name]
        return X_train[:n_train], X_test[:n_test], y_train[:n_train], y_test[:n_test]
    if name == "counts":
        X, labels, _ = make_counts(generated_rows, 500, random_state=seed)
    else:
        documents, labels = make_documents(generated_rows, random_state=seed)
        X = TfidfVectorizer(dtype=np.float32).fit_transform(documents)
    return train_test_split(sp.csr_matrix(X, dtype=np.float32), labels, test_size=1 / 3, random_state=seed)


def dense(X):
    return X.toarray() if sp.issparse(X) else X


_UMAP_COLD = """
import sys, time
import numpy as np, scipy.sparse as sp
started = time.perf_counter()
import umap
X = sp.load_npz(sys.argv[1]) if sys.argv[1].endswith(".npz") else np.load(sys.argv[1])
umap.UMAP(random_state=int(sys.argv[2])).fit(X)
print(time.perf_counter() - started)
"""


def umap_cold_seconds(X_train, seed):
    """Seconds of UMAP's import and first fit in a fresh process with an empty numba cache:
    numba's compilation included, as a user meets it the first time."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / ("X.npz" if sp.issparse(X_train) else "X.npy"))
        sp.save_npz(path, X_train) if sp.issparse(X_train) else np.save(path, X_train)
        # numba keeps compiled code on disk across processes: an empty cache makes it compile, as at first use
        env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(folder) / "numba"))
        out = subprocess.run([sys.executable, "-c", _UMAP_COLD, path, str(seed)], capture_output=True, text=True,
                             check=True, env=env)
    return float(out.stdout.split()[-1])


def warm_umap():
    """Compile UMAP's numba code with a tiny fit, so that later figures are warm; ``False``
    (and a line saying so) where umap-learn is not installed."""
    try:
        import umap
    except ImportError:
        print("umap-learn is not installed: its rows are left out")
        return False
    umap.UMAP(n_epochs=5).fit(np.random.default_rng(0).random((100, 5)))
    return True


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
    trust = trustworthiness(dense(X_test[rows]), Z_test[rows], n_neighbors=10)
    mse = None if X_hat is None else float(np.mean((X_hat - dense(X_test)) ** 2))
    row = {"knn": float(knn), "trustworthiness": float(trust), "mse": mse}
    if X_train is not None:
        row["train_trustworthiness"] = float(trustworthiness(dense(X_train[rows]), Z_train[rows], n_neighbors=10))
    return row


def fit_vae(setting, X_train, X_test, y_train, y_test, args):
    """A VAE fitted in stages, scored after each; returns the last row and the curve.

    Only the ``"adaptive"`` schedule is fitted in stages: the others are functions of
    ``max_steps``, so stopping at a stage would change their course; they are fitted once.
    """
    if not getattr(fit_vae, "warm", False):
        # a process's first fit sets torch up (about 1 s here): warm it, as UMAP's compilation is,
        # so that every row is a notebook's second fit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            CompressionVAE(max_steps=20, random_state=0).fit(np.random.default_rng(0).random((300, 8)))
        fit_vae.warm = True
    params = {k: v for k, v in setting.items() if k != "early"}
    if setting.get("early"):
        params["n_iter_no_change"] = args.patience
    vae = CompressionVAE(n_components=2, random_state=args.seed, **params)
    if args.max_steps:
        vae.set_params(max_steps=args.max_steps)
    staged = vae.learning_rate == "adaptive"
    weight = params.get("neighbor_weight", "auto")
    limit = step_budget(dict(vae.get_params(), neighbor_weight=0.4 if weight == "auto" else weight), X_train.shape[0])
    curve, seconds = [], 0.0
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
        if vae.placement != "encoder" and vae.neighbor_weight_ > 0:  # also the encoder's own map
            encoder = score(vae.transform(X_train), vae.set_params(placement="encoder").transform(X_test), X_test,
                            y_train, y_test)
            vae.set_params(placement=params.get("placement", "auto"))
            row["encoder"] = {"knn": encoder["knn"], "trustworthiness": encoder["trustworthiness"]}
        curve.append({"seconds": seconds, "steps": vae.n_steps_, **row})
        if not staged or vae.stop_reason_ != "max_steps" or vae.n_steps_ >= limit:
            break
    return {**curve[-1], "fit_seconds": seconds, "stop_reason": vae.stop_reason_, "curve": curve}


def fit_other(method, X_train, X_test, y_train, y_test, args):
    if method == "pca":
        model = PCA(2, random_state=args.seed)
    else:
        import umap

        model = umap.UMAP(random_state=None if method == "umap-unseeded" else args.seed)
        if not getattr(fit_other, "warm", False):
            # numba compiles UMAP's code in the first fit of a process: a fit and a transform on
            # more rows than umap-learn's exact-search limit (4,096) compile what the timed fit runs;
            # seeded and unseeded fits run different (one-thread and parallel) code
            warm_up = np.random.default_rng(0).random((5000, 8), dtype=np.float32)
            for rows in (warm_up, sp.csr_matrix(warm_up)):  # dense and sparse input run different code
                for seed in (0, None):
                    umap.UMAP(n_epochs=10, random_state=seed).fit(rows).transform(rows[:10])
            fit_other.warm = True
    started = time.perf_counter()
    Z_train = model.fit_transform(X_train)
    seconds = time.perf_counter() - started
    Z_test = model.transform(X_test)
    X_hat = model.inverse_transform(Z_test) if method == "pca" else None
    row = score(Z_train, Z_test, X_test, y_train, y_test, X_hat, X_train if args.train_trust else None)
    if method == "umap" and args.umap_cold:
        row["cold_seconds"] = umap_cold_seconds(X_train, args.seed)
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
    parser.add_argument("--datasets", nargs="+", default=None, choices=DATASETS,
                        help="default: digits, and MNIST with --data")
    parser.add_argument("--generated-rows", type=int, default=6000, help="rows of the counts and text datasets")
    parser.add_argument("--umap-cold", action="store_true",
                        help="also time UMAP's import and first fit in a fresh process")
    parser.add_argument("--setting", nargs=2, action="append", default=[], metavar=("NAME", "JSON"),
                        help="a VAE row with these parameters (repeatable); add NAME to --methods' rows")
    parser.add_argument("--train-trust", action="store_true",
                        help="also score trustworthiness(10) on the first training rows")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    try:
        import umap  # noqa: F401
    except ImportError:
        args.methods = [m for m in args.methods if not m.startswith("umap")]
    settings = dict(VAE_SETTINGS)
    for name, parameters in args.setting:
        settings[name] = json.loads(parameters)
        if name not in args.methods:
            args.methods.append(name)
    results = {}
    if args.datasets is None:
        args.datasets = ["digits", "mnist"] if args.data else ["digits"]
    for name in args.datasets:
        X_train, X_test, y_train, y_test = load_dataset(name, args.data, args.seed, args.generated_rows)
        results[name] = {}
        for method in args.methods:
            if method in settings:
                row = fit_vae(settings[method], X_train, X_test, y_train, y_test, args)
            else:
                row = fit_other(method, X_train, X_test, y_train, y_test, args)
            results[name][method] = row
            print(f"{name:9s} {method:17s} 10-NN {row['knn']:.3f}  trust {row['trustworthiness']:.3f}  "
                  f"MSE {row['mse'] if row['mse'] is None else round(row['mse'], 4)}  fit {row['fit_seconds']:7.1f} s"
                  + (f"  {row['steps']} steps ({row['stop_reason']})" if "steps" in row else "")
                  + (f"  train trust {row['train_trustworthiness']:.3f}" if args.train_trust else "")
                  + (f"  encoder {row['encoder']['knn']:.3f} / {row['encoder']['trustworthiness']:.3f}"
                     if "encoder" in row else "")
                  + (f"  fresh process {row['cold_seconds']:.1f} s" if "cold_seconds" in row else ""), flush=True)
    document = {"machine": machine(), "args": vars(args), "results": results}
    write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
