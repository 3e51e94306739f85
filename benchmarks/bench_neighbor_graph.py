"""Time and recall of the neighbour option's graph against scikit-learn's exact search.

Finds each training row's 15 nearest other rows in MNIST's first 54,000 training rows
scaled to [0, 1] (what a fit with the default 10% validation split searches) three ways:
scikit-learn's exact ``NearestNeighbors`` (how the package searched before issue #10),
:func:`cvae.neighbors.search.neighbor_graph` as a fit calls it (among 50 principal components at this
size), and the same blockwise search on all 784 features. Prints seconds and the share of
each row's exact neighbours found (recall), and writes them as JSON.

With ``--generated ROWS``, the rows are instead ``ROWS`` x ``--features`` generated rows
(Gaussian clusters), too many for an exact graph: the exact neighbours of ``--queries``
sampled rows are found by a blockwise search over all rows, and the package's approximate
search (pynndescent, the ``neighbors`` extra) is timed and scored against them; peak RSS
is reported.

Usage::

    python benchmarks/bench_neighbor_graph.py --data ../shared/datasets/mnist.npz --approximate \\
        --out benchmarks/results/neighbor_graph.json
    python benchmarks/bench_neighbor_graph.py --generated 1000000 --features 64 \\
        --out benchmarks/results/neighbor_graph_1m.json
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
from cvae.neighbors import search as neighbor_search  # noqa: E402


def recall(graph, exact):
    """Mean share of a row's exact neighbours that ``graph`` lists."""
    return float(np.mean([len(np.intersect1d(a, b)) for a, b in zip(graph, exact)]) / exact.shape[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="mnist.npz with X_train")
    parser.add_argument("--generated", type=int, help="rows of generated data instead of MNIST")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--approximate", action="store_true", help="add the approximate search (pynndescent)")
    parser.add_argument("--rows", type=int, default=54000)
    parser.add_argument("--n-neighbors", type=int, default=15)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.generated:
        return generated(args)
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

    if args.approximate:
        started = time.perf_counter()
        graph = neighbor_search.neighbor_graph(X, k, method="approximate")
        rows["cvae approximate (pynndescent, 50 components)"] = {"seconds": time.perf_counter() - started,
                                                                 "recall": recall(graph, exact)}

    for name, row in rows.items():
        print(f"{name:32s} {row['seconds']:7.1f} s  recall {row['recall']:.3f}", flush=True)
    document = {"machine": machine(), "args": vars(args), "results": rows}
    if args.out:
        write_json(args.out, document)
    return document


def generated(args):
    """Approximate search on generated rows, scored on sampled rows' exact neighbours."""
    import resource

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3, size=(50, args.features)).astype(np.float32)
    X = centres[rng.integers(50, size=args.generated)] + rng.normal(size=(args.generated, args.features)).astype(
        np.float32)
    k = args.n_neighbors
    started = time.perf_counter()
    graph = neighbor_search.neighbor_graph(X, k, method="approximate")
    seconds = time.perf_counter() - started
    queries = np.sort(rng.choice(args.generated, args.queries, replace=False))
    data = torch.from_numpy(X)
    exact = neighbor_search.nearest_rows(data[queries], data, k + 1)[1].numpy()[:, 1:]
    row = {"rows": args.generated, "features": args.features, "seconds": seconds,
           "recall": recall(graph[queries], exact), "queries": args.queries,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(f"{args.generated} x {args.features}: approximate graph {seconds:.1f} s, recall@{k} "
          f"{row['recall']:.3f} on {args.queries} rows, peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)
    document = {"machine": machine(), "args": vars(args), "results": {"approximate": row}}
    if args.out:
        write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
