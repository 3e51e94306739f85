"""partial_fit: does it learn over chunks, and does it keep earlier rows in place?

Two experiments per dataset (digits; MNIST with ``--data``), 2-D, test rows scored by 10-NN
accuracy (classifier fitted on the training rows' embedding):

- **learns**: ``fit`` on the training rows, against ``partial_fit`` over ``--chunks`` chunks
  of them, repeated for as many epochs as give ``fit``'s number of steps;
- **stable**: ``fit`` on the rows of classes 0-4, then ``partial_fit`` on the rows of classes
  5-9 for ``--stable-epochs`` passes, with each of ``--landmark-weights``. The
  displacement of the first classes' training rows (encoder embedding before and after) is
  reported as its median over the norm of the embedding's per-axis standard deviations,
  beside the 10-NN over all classes of a ``fit`` on all of them. With
  ``--neighbor-weights``, each update also runs with ``neighbor_weight`` set to each of
  them before its ``partial_fit`` calls (``auto``: the fit's). With ``--loose-passes k``,
  the first ``k`` passes run at ``landmark_weight=--loose-landmark-weight`` (replay stays
  on): the layout makes room for the new classes, and the later passes at the full weight
  bring the first classes back. UMAP, when installed, stands
  beside: its only update that keeps earlier rows where they were is ``transform``
  (``fit`` on classes 0-4, ``transform`` of the rest: displacement 0).

Usage::

    python benchmarks/bench_partial_fit.py --out benchmarks/results/partial_fit_digits.json
    python benchmarks/bench_partial_fit.py --data mnist.npz --datasets mnist \\
        --out benchmarks/results/partial_fit_mnist.json
"""

import argparse
import itertools
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import load_dataset, machine, warm_umap, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402


def knn_of(Z_train, y_train, Z_test, y_test):
    """10-NN accuracy of test embeddings ``Z_test`` by training embeddings ``Z_train``."""
    return float(KNeighborsClassifier(10).fit(Z_train, y_train).score(Z_test, y_test))


def knn(vae, X_train, y_train, X_test, y_test):
    return knn_of(vae.transform(X_train), y_train, vae.transform(X_test), y_test)


def learns(X_train, X_test, y_train, y_test, args):
    started = time.perf_counter()
    fitted = CompressionVAE(random_state=args.seed).fit(X_train)
    row = {"fit": {"knn": knn(fitted, X_train, y_train, X_test, y_test), "steps": fitted.n_steps_,
                   "seconds": time.perf_counter() - started}}
    chunks = np.array_split(np.random.default_rng(args.seed).permutation(len(X_train)), args.chunks)
    partial = CompressionVAE(random_state=args.seed)
    started = time.perf_counter()
    epochs = 0
    while partial.n_steps_ < fitted.n_steps_ if epochs else True:
        for chunk in chunks:
            partial.partial_fit(X_train[np.sort(chunk)])
        epochs += 1
    row["partial_fit"] = {"knn": knn(partial, X_train, y_train, X_test, y_test), "steps": partial.n_steps_,
                          "epochs": epochs, "seconds": time.perf_counter() - started}
    fitted.set_params(placement="encoder")
    row["fit_encoder_map"] = {"knn": knn(fitted, X_train, y_train, X_test, y_test)}
    return row


def stable(X_train, X_test, y_train, y_test, args):
    first = np.asarray(y_train).astype(int) < 5
    everything = CompressionVAE(random_state=args.seed).fit(X_train)
    row = {"fit_all": {"knn": knn(everything, X_train, y_train, X_test, y_test)}}
    for weight, neighbor_weight in itertools.product(args.landmark_weights, args.neighbor_weights):
        vae = CompressionVAE(random_state=args.seed).fit(X_train[first])
        vae.set_params(placement="encoder")
        before = vae.transform(X_train[first])
        # partial_fit keeps its sample of rows for placement
        vae.set_params(placement="auto", neighbor_weight=neighbor_weight)
        started = time.perf_counter()
        for epoch in range(args.stable_epochs):
            loose = epoch < args.loose_passes and weight > 0  # weight 0 (no replay) stays 0
            vae.set_params(landmark_weight=args.loose_landmark_weight if loose else weight)
            vae.partial_fit(X_train[~first])
        after = vae.set_params(placement="encoder").transform(X_train[first])
        spread = float(np.linalg.norm(before.std(axis=0)))
        seconds = time.perf_counter() - started
        key = f"landmark_weight={weight}"
        key += "" if neighbor_weight == "auto" else f",neighbor_weight={neighbor_weight}"
        key += f",loose_passes={args.loose_passes}" if args.loose_passes else ""
        row[key] = {
            "median_displacement_over_spread": float(np.median(np.linalg.norm(after - before, axis=1)) / spread),
            "knn_all_classes_encoder": knn(vae, X_train, y_train, X_test, y_test),
            "knn_all_classes": knn(vae.set_params(placement="auto"), X_train, y_train, X_test, y_test),
            "seconds": seconds,
        }
    if args.umap:
        row["umap"] = umap_stable(X_train, X_test, y_train, y_test, first, args.seed)
    return row


def umap_stable(X_train, X_test, y_train, y_test, first, seed):
    """UMAP fitted on all classes, and fitted on classes 0-4 with the rest placed by ``transform``."""
    import umap

    everything = umap.UMAP(random_state=seed).fit(X_train)
    row = {"fit_all": {"knn": knn_of(everything.embedding_, y_train, everything.transform(X_test), y_test)}}
    started = time.perf_counter()
    model = umap.UMAP(random_state=seed).fit(X_train[first])
    train = np.empty((len(X_train), 2), np.float32)
    train[first], train[~first] = model.embedding_, model.transform(X_train[~first])
    row["transform"] = {"median_displacement_over_spread": 0.0,
                        "knn_all_classes": knn_of(train, y_train, model.transform(X_test), y_test),
                        "seconds": time.perf_counter() - started}
    return row


def neighbor_weight(text):
    return text if text == "auto" else float(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="MNIST as an .npz of X_train, y_train, X_test, y_test")
    parser.add_argument("--datasets", nargs="+", default=["digits"])
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--stable-epochs", type=int, default=20)
    parser.add_argument("--landmark-weights", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--neighbor-weights", type=neighbor_weight, nargs="+", default=["auto"],
                        help="neighbor_weight of the stable experiment's partial_fit calls")
    parser.add_argument("--loose-passes", type=int, default=0,
                        help="first passes of the stable experiment at --loose-landmark-weight")
    parser.add_argument("--loose-landmark-weight", type=float, default=0.01)
    parser.add_argument("--stable-only", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    args.umap = warm_umap()
    document = {"machine": machine(), "args": vars(args), "results": {}}
    for name in args.datasets:
        X_train, X_test, y_train, y_test = load_dataset(name, args.data, args.seed)
        result = document["results"][name] = {}
        if not args.stable_only:
            result["learns"] = learns(X_train, X_test, y_train, y_test, args)
            print(name, "learns", result["learns"], flush=True)
        result["stable"] = stable(X_train, X_test, y_train, y_test, args)
        print(name, "stable", result["stable"], flush=True)
        write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
