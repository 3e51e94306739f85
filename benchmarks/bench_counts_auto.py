"""Should ``likelihood="auto"`` choose a count likelihood for non-negative whole numbers?

Whole numbers are counts in some data (reads per gene, words per document) and not in other
(8-bit pixels, digits' 0-16 intensities). This fits each likelihood on data of both kinds,
side by side, and scores the 2-D embedding of held-out rows: 10-NN accuracy (classifier on
the train embedding) and trustworthiness(10). Data: scikit-learn's digits (75/25 split),
generated counts (:func:`cvae.datasets.make_counts`, 5,000 x 500, 8 clusters, separation
0.5) and, with ``--data``, 20,000 MNIST training images as uint8 whole numbers (test: 5,000
test images).

Usage::

    python benchmarks/bench_counts_auto.py --data ../shared/datasets/mnist.npz \\
        --out benchmarks/results/counts_auto.json
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.manifold import trustworthiness
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import machine, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402
from cvae.datasets import make_counts  # noqa: E402

LIKELIHOODS = ("gaussian", "poisson", "negative_binomial")


def datasets(args):
    X, y = load_digits(return_X_y=True)
    yield "digits (0-16)", train_test_split(X, y, test_size=0.25, random_state=0)
    counts, labels, _ = make_counts(args.count_rows, args.count_features, n_clusters=8, separation=args.separation,
                                    random_state=0)
    yield "generated counts", train_test_split(counts, labels, test_size=0.25, random_state=0)
    if args.data:
        with np.load(args.data) as mnist:
            yield "MNIST (uint8)", (mnist["X_train"][: args.mnist_rows], mnist["X_test"][:5000],
                                    mnist["y_train"][: args.mnist_rows], mnist["y_test"][:5000])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="mnist.npz (X_train, y_train, X_test, y_test)")
    parser.add_argument("--mnist-rows", type=int, default=20000)
    parser.add_argument("--count-rows", type=int, default=5000)
    parser.add_argument("--count-features", type=int, default=500)
    parser.add_argument("--separation", type=float, default=0.5, help="of the generated clusters")
    parser.add_argument("--max-steps", type=int, default=4000)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    rows = []
    for name, (X_train, X_test, y_train, y_test) in datasets(args):
        dense_test = X_test.toarray() if hasattr(X_test, "toarray") else X_test
        for likelihood in LIKELIHOODS:
            vae = CompressionVAE(likelihood=likelihood, max_steps=args.max_steps, n_iter_no_change=5, neighbor_weight=0,
                                 random_state=0)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vae.fit(X_train)
            seconds = time.perf_counter() - start
            Z_train, Z_test = vae.transform(X_train), vae.transform(X_test)
            knn = KNeighborsClassifier(10).fit(Z_train, y_train).score(Z_test, y_test)
            trust = trustworthiness(np.asarray(dense_test, dtype=np.float64), Z_test, n_neighbors=10)
            rows.append({"data": name, "likelihood": likelihood, "knn": float(knn), "trust": float(trust),
                         "fit_seconds": seconds, "steps": vae.n_steps_})
            print(f"{name:>17} {likelihood:>17}: 10-NN {knn:.3f}, trust {trust:.3f}, {seconds:.0f} s, "
                  f"{vae.n_steps_} steps", flush=True)
    document = {"machine": machine(), "settings": vars(args), "rows": rows}
    write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
