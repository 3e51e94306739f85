"""Time and recall of the neighbour option's graph against scikit-learn's exact search.

Finds each training row's 15 nearest other rows in MNIST's first 54,000 training rows
scaled to [0, 1] (what a fit with the default 10% validation split searches) three ways:
scikit-learn's exact ``NearestNeighbors`` (how the package searched before issue #10),
:func:`cvae.neighbor_search.neighbor_graph` as a fit calls it (among 50 principal components at this
size), and the same blockwise search on all 784 features. Prints seconds and the share of
each row's exact neighbours found (recall), and writes them as JSON.

Usage::

    python benchmarks/bench_neighbor_graph.py --data ../shared/datasets/mnist.npz \\
        --out benchmarks/results/neighbor_graph.json
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import machine, write_json  # noqa: E402
from cvae import neighbor_search  # noqa: E402


def recall(graph, exact):
    """Mean share of a row's exact neighbours that ``graph`` lists."""
    return float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(graph, exact)]) / exact.shape[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="mnist.npz with X_train")
    parser.add_argument("--rows", type=int, default=54000)
    parser.add_argument("--n-neighbors", type=int, default=15)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    X = np.load(args.data)["X_train"][: args.rows].reshape(args.rows, -1).astype(np.float32) / 255
    k = args.n_neighbors

    started = time.perf_counter()
    exact = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X, return_distance=False)[:, 1:]
    rows = {"scikit-learn exact": {"seconds": time.perf_counter() - started, "recall": 1.0}}

    started = time.perf_counter()
    graph = neighbor_search.neighbor_graph(X, k)
    rows["cvae (50 principal components)"] = {"seconds": time.perf_counter() - started, "recall": recall(graph, exact)}

    started = time.perf_counter()
    graph = neighbor_search._self_nearest_rows(X, k + 1, torch.device("cpu"))[:, 1:]
    rows["cvae blockwise, all features"] = {"seconds": time.perf_counter() - started, "recall": recall(graph, exact)}

    for name, row in rows.items():
        print(f"{name:32s} {row['seconds']:7.1f} s  recall {row['recall']:.3f}", flush=True)
    document = {"machine": machine(), "args": vars(args), "results": rows}
    if args.out:
        write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
