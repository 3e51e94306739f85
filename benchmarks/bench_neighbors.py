"""2-D embeddings compared: PCA, UMAP, and CompressionVAE plain, with IAF and with neighbours.

Prints a table and writes JSON. For each dataset and method, on the test rows: 10-NN
accuracy of the 2-D embedding (classifier fit on the train embedding; the JSON also has the
same accuracy within the train embedding), trustworthiness(10) on up to 5,000 test rows, on
5,000 train rows (a gap shows a map that places new rows worse than the rows it was fitted
on) and with the test rows placed by their nearest train rows instead of by the method's own
``transform`` (the median of the embeddings of their 15 nearest train rows: what a map that
consults the training rows gets from the same layout; being a nearest-neighbour map, it can
beat the layout's own figures, as it does PCA's),
reconstruction MSE of ``inverse_transform(transform(X))`` in [0, 1] scale, test ELBO, fit
seconds, transform samples/s and the neighbour pairs each layout was fitted with. The VAEs
train with the estimator's defaults (50,000 steps at most, adaptive learning rate) unless
``--max-steps`` says otherwise. UMAP joins the table when ``umap-learn`` is installed (an
optional benchmark dependency, ``pip install umap-learn``), and ``--umap-epochs`` adds
UMAP rows fitted with fewer epochs. With ``--likelihood`` the table of
``bench_likelihood.py`` (test log-likelihood on binarized MNIST) is printed too.

Usage::

    python benchmarks/bench_neighbors.py --data ../shared/datasets/mnist.npz --umap-epochs 10 30 \
        --likelihood benchmarks/results/likelihood_cpu.json benchmarks/results/likelihood_iaf_cpu.json \
        --out benchmarks/results/neighbors.json

Without ``--data`` only the digits run; ``--methods`` picks the rows (e.g. ``--methods
neighbours --n-neighbors 30`` to try one setting of the option). Targets (issue 7, MNIST
2-D): the plain VAE at 10-NN >= 0.85 and trustworthiness >= 0.92; with the option 10-NN >=
0.95 and trustworthiness >= 0.95, reconstruction MSE <= 1.1x and fit time <= 3x the plain
VAE's.
"""

import argparse
import functools
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors

from cvae import CompressionVAE

# Rows that trustworthiness is measured on (its cost grows with the square of their number).
TRUST_ROWS = 5000
TARGETS = {"knn": 0.95, "trustworthiness": 0.95, "mse_vs_plain": 1.1, "fit_time_vs_plain": 3.0,
           "plain_knn": 0.85, "plain_trustworthiness": 0.92}


def load_datasets(path):
    X, y = load_digits(return_X_y=True)
    datasets = {"digits": train_test_split((X / 16.0).astype(np.float32), y, test_size=0.25, random_state=0)}
    if path:
        with np.load(path) as data:
            X_train = data["X_train"].reshape(-1, 784).astype(np.float32) / 255.0
            X_test = data["X_test"].reshape(-1, 784).astype(np.float32) / 255.0
            datasets["mnist"] = (X_train, X_test, data["y_train"], data["y_test"])
    return datasets


METHODS = ("pca", "vae", "iaf", "neighbours", "neighbours-tsne", "umap")


def methods(args, dataset):
    """``{table name: constructor}`` of the methods in ``args.methods``, in table order."""
    steps = args.max_steps if dataset == "mnist" else args.max_steps_digits
    common = dict(n_components=2, random_state=0)
    if steps is not None:
        common["max_steps"] = steps
    found = {
        "pca": [("PCA", lambda: PCA(n_components=2, random_state=0))],
        "vae": [("VAE", lambda: CompressionVAE(**common, neighbor_weight=0))],
        "iaf": [(f"VAE + IAF-{args.iaf_length}",
                 lambda: CompressionVAE(**common, neighbor_weight=0, iaf_flow_length=args.iaf_length))],
    }
    for objective in ("umap", "tsne"):
        found["neighbours" if objective == "umap" else f"neighbours-{objective}"] = [
            (neighbours_name(args, objective), functools.partial(
                CompressionVAE, **common, neighbor_weight=args.neighbor_weight, n_neighbors=args.n_neighbors,
                neighbor_samples=args.neighbor_samples, neighbor_objective=objective,
            ))
        ]
    if "umap" in args.methods:
        try:
            import umap

            found["umap"] = [
                ("UMAP" if epochs is None else f"UMAP ({epochs} epochs)",
                 functools.partial(umap.UMAP, n_components=2, random_state=0, n_epochs=epochs))
                for epochs in [None, *args.umap_epochs]
            ]
        except ImportError:
            pass
    return dict(row for key in METHODS if key in args.methods for row in found.get(key, []))


def positive_pairs(model, n_samples):
    """Neighbour pairs a fit pulled together, counted with repeats: the budget of its layout.

    The neighbour option draws ``neighbor_samples`` pairs per row per step, counted here at
    the full batch size (the last batch of each epoch is smaller: 0.03% fewer pairs on
    MNIST at the default 128). UMAP samples each edge of its graph ``n_epochs * weight /
    max weight`` times (umap-learn's default ``n_epochs``: 200 above 10,000 rows, else
    500). ``None`` for methods without such pairs.
    """
    if isinstance(model, CompressionVAE):
        return model.n_steps_ * model.batch_size * model.neighbor_samples if model.neighbor_weight_ > 0 else None
    graph = getattr(model, "graph_", None)
    if graph is None:
        return None
    n_epochs = model.n_epochs or (200 if n_samples > 10_000 else 500)
    return float(n_epochs * graph.data.sum() / graph.data.max())


def neighbours_name(args, objective):
    """Table name of the neighbour option with ``objective`` and ``args``' settings."""
    kind = "neighbours" if objective == "umap" else f"{objective} neighbours"
    return f"VAE + {kind} ({args.neighbor_weight:g}, k={args.n_neighbors}, x{args.neighbor_samples})"


def train_knn(Z_train, y_train, n_rows=10_000):
    """10-NN accuracy within the train embedding (5-fold cross-validation on ``n_rows`` rows).

    Set beside the test figure, it separates a layout that mixes the classes (both low) from
    an encoder that fails to generalize (test below train).
    """
    rows = np.random.default_rng(0).permutation(len(Z_train))[:n_rows]
    return float(cross_val_score(KNeighborsClassifier(10), Z_train[rows], y_train[rows], cv=5).mean())


def nearest_train_rows(X_train, X_new, n_neighbors=15):
    """Indices ``(len(X_new), n_neighbors)`` of each new row's nearest train rows (data space)."""
    return NearestNeighbors(n_neighbors=n_neighbors).fit(X_train).kneighbors(X_new, return_distance=False)


def placed_by_train_neighbours(Z_train, neighbour_rows):
    """New rows placed at the coordinate-wise median of the embeddings of their nearest train rows.

    An out-of-sample map built from the train layout alone, in the spirit of UMAP's
    ``transform`` (which starts each new row from its neighbours' embeddings and then
    optimizes it). Its trustworthiness, beside that of the method's own map, tells a map that
    places new rows badly from a layout that gives them little room. On MNIST the median kept
    more than the mean or an inverse-distance mean of 1-30 neighbours (0.946 against at most
    0.940 on the ``tsne`` option's layout). ``neighbour_rows`` come from
    :func:`nearest_train_rows`.
    """
    return np.median(Z_train[neighbour_rows], axis=1)


def evaluate(model, X_train, X_test, y_train, y_test, test_neighbours=None):
    """Fit ``model`` and measure it.

    ``test_neighbours``: :func:`nearest_train_rows` of ``X_test[:TRUST_ROWS]``, found here if not given.
    """
    if test_neighbours is None:
        test_neighbours = nearest_train_rows(X_train, X_test[:TRUST_ROWS])
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    Z_test = model.transform(X_test)
    rate = len(X_test) / (time.perf_counter() - started)
    Z_train = model.transform(X_train)
    row = {
        "fit_seconds": fit_seconds,
        "transform_samples_per_s": rate,
        "knn": float(KNeighborsClassifier(10).fit(Z_train, y_train).score(Z_test, y_test)),
        "train_knn": train_knn(Z_train, y_train),
        "positive_pairs": positive_pairs(model, len(X_train)),
        "trustworthiness": float(trustworthiness(X_test[:TRUST_ROWS], Z_test[:TRUST_ROWS], n_neighbors=10)),
        "train_trustworthiness": float(trustworthiness(X_train[:TRUST_ROWS], Z_train[:TRUST_ROWS], n_neighbors=10)),
        "placed_trustworthiness": float(trustworthiness(
            X_test[:TRUST_ROWS], placed_by_train_neighbours(Z_train, test_neighbours), n_neighbors=10)),
    }
    if hasattr(model, "inverse_transform") and not type(model).__name__ == "UMAP":
        row["mse"] = float(np.mean((model.inverse_transform(Z_test) - X_test) ** 2))
    if hasattr(model, "score_samples") and isinstance(model, CompressionVAE):
        row["test_elbo"] = float(model.score(X_test))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mnist.npz with X_train, y_train, X_test, y_test")
    parser.add_argument("--max-steps", type=int, default=None, help="steps on MNIST (default: the estimator's)")
    parser.add_argument("--max-steps-digits", type=int, default=3000)
    parser.add_argument("--neighbor-weight", type=float, default=0.4, help="per feature: 313.6 for MNIST's 784")
    parser.add_argument("--iaf-length", type=int, default=2, help="IAF steps of the flow model")
    parser.add_argument("--n-neighbors", type=int, default=CompressionVAE().n_neighbors,
                        help="neighbours per row of the neighbour option (default: the estimator's)")
    parser.add_argument("--neighbor-samples", type=int, default=CompressionVAE().neighbor_samples,
                        help="neighbours drawn per row and step (default: the estimator's)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                        help="methods to run (UMAP only when umap-learn is installed)")
    parser.add_argument("--umap-epochs", type=int, nargs="*", default=[],
                        help="extra UMAP rows with these n_epochs (its budget of neighbour pairs)")
    parser.add_argument("--likelihood", nargs="+", default=[],
                        help="JSON files written by bench_likelihood.py, to print their tables")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    results = {}
    for dataset, (X_train, X_test, y_train, y_test) in load_datasets(args.data).items():
        results[dataset] = {}
        test_neighbours = nearest_train_rows(X_train, X_test[:TRUST_ROWS])  # the same for every method
        for name, make in methods(args, dataset).items():
            results[dataset][name] = evaluate(make(), X_train, X_test, y_train, y_test, test_neighbours)
            print(f"{dataset} {name}: {results[dataset][name]}", flush=True)
    report(results, args)


def report(results, args):
    print(f"\n{'':<48} {'':>6} {'trustworthiness(10)':^20}")
    print(f"{'data':<7} {'method':<40} {'10-NN':>6} {'test':>6} {'train':>6} {'placed':>6} {'MSE':>7} {'ELBO':>8} "
          f"{'fit s':>7} {'transform/s':>11} {'pairs':>6}")
    for dataset, rows in results.items():
        for name, row in rows.items():
            mse = f"{row['mse']:.4f}" if "mse" in row else ""
            elbo = f"{row['test_elbo']:.1f}" if "test_elbo" in row else ""
            pairs = f"{row['positive_pairs'] / 1e6:.2f}M" if row.get("positive_pairs") else ""
            print(f"{dataset:<7} {name:<40} {row['knn']:>6.3f} {row['trustworthiness']:>6.3f} "
                  f"{row['train_trustworthiness']:>6.3f} {row['placed_trustworthiness']:>6.3f} {mse:>7} {elbo:>8} "
                  f"{row['fit_seconds']:>7.1f} {row['transform_samples_per_s']:>11,.0f} {pairs:>6}")
    targets = {}
    rows = results.get("mnist", {})
    if "VAE" in rows:
        plain = rows["VAE"]
        targets = {
            "plain VAE 10-NN >= 0.85": plain["knn"] >= TARGETS["plain_knn"],
            "plain VAE trustworthiness >= 0.92": plain["trustworthiness"] >= TARGETS["plain_trustworthiness"],
        }
        for objective in ("umap", "tsne"):
            option = rows.get(neighbours_name(args, objective))
            if option is not None:
                targets.update({
                    f"{objective}: 10-NN >= 0.95": option["knn"] >= TARGETS["knn"],
                    f"{objective}: trustworthiness >= 0.95": option["trustworthiness"] >= TARGETS["trustworthiness"],
                    f"{objective}: MSE <= 1.1x plain": option["mse"] <= TARGETS["mse_vs_plain"] * plain["mse"],
                    f"{objective}: fit time <= 3x plain":
                        option["fit_seconds"] <= TARGETS["fit_time_vs_plain"] * plain["fit_seconds"],
                })
        for name, met in targets.items():
            print(f"target {name}: {'met' if met else 'MISSED'}")
    for path in args.likelihood:
        print_likelihood_table(json.loads(Path(path).read_text()))
    if args.out:
        result = {
            "machine": {"platform": platform.platform(), "python": platform.python_version()},
            "settings": vars(args),
            "results": results,
            "targets": targets,
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


def print_likelihood_table(likelihood):
    """The test log-likelihoods measured by bench_likelihood.py (dynamically binarized MNIST)."""
    settings = likelihood["settings"]
    print(f"\nbinarized MNIST, 784-200-200-50, {settings['minutes']:g} min of training per model, "
          f"NLL with k={settings['k']} importance samples (nats, lower is better)")
    print(f"{'posterior':<12} {'epochs':>7} {'test ELBO':>10} {'test NLL':>9} {'active units':>13}")
    for run in likelihood["runs"]:
        name = f"IAF-{run['iaf_flow_length']}" if run["iaf_flow_length"] else "Gaussian"
        print(f"{name:<12} {run['epochs']:>7.0f} {run['test_elbo']:>10.2f} {run['test_nll']:>9.2f} "
              f"{run['active_units']:>13}")
    print(f"{'IWAE paper':<12} {3280:>7} {'':>10} {86.76:>9.2f}")


if __name__ == "__main__":
    main()
