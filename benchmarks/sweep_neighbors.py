"""Settings of the neighbour-preserving option tried one at a time, on 2-D MNIST or digits.

Each setting fits ``CompressionVAE(neighbor_weight=...)`` once and reports what
``bench_neighbors.py`` reports for it (10-NN accuracy on the test rows and within the train
embedding, trustworthiness(10) on test and on train rows, reconstruction MSE, test ELBO, fit
seconds). Besides the estimator's parameters (``--neighbor-weight``, ``--n-neighbors``,
``--neighbor-samples``, ``--neighbor-objective``, ``--beta``, ``--dropout``,
``--hidden-layer-sizes``, ``--max-steps``, ``--random-state``); it uses the estimator's
public parameters only. Results are appended, one JSON object per line, to ``--out``.

Usage (the 10,000-step runs quoted in the README)::

    python benchmarks/sweep_neighbors.py --data ../shared/datasets/mnist.npz --max-steps 10000 \\
        --n-neighbors 30 --out benchmarks/results/neighbor_settings.jsonl

Without ``--data`` it runs on scikit-learn's digits. The file
``benchmarks/results/neighbor_settings.jsonl`` holds the runs that benchmarks/README.md
summarizes, made two at a time with ``--threads 1``; rows without ``neighbor_samples`` drew
one neighbour per row, and rows with ``n_negative``, ``distance_scale`` or ``lr_drop_at``
were made by earlier versions of this script, which patched the package to try them.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench_neighbors  # noqa: E402
import torch  # noqa: E402

from cvae import CompressionVAE  # noqa: E402


def fit_and_evaluate(args):
    """One fit of the neighbour option with ``args``' settings."""
    datasets = bench_neighbors.load_datasets(args.data)
    X_train, X_test, y_train, y_test = datasets["mnist" if args.data else "digits"]
    model = CompressionVAE(
        n_components=2, neighbor_weight=args.neighbor_weight, n_neighbors=args.n_neighbors,
        neighbor_samples=args.neighbor_samples, neighbor_objective=args.neighbor_objective, beta=args.beta,
        dropout=args.dropout, hidden_layer_sizes=args.hidden_layer_sizes,
        max_steps=args.max_steps, random_state=args.random_state,
    )
    return bench_neighbors.evaluate(model, X_train, X_test, y_train, y_test)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mnist.npz (default: scikit-learn's digits)")
    parser.add_argument("--max-steps", type=int, default=10000)
    parser.add_argument("--neighbor-weight", type=float, default=0.4)
    parser.add_argument("--n-neighbors", type=int, default=CompressionVAE().n_neighbors)
    parser.add_argument("--neighbor-samples", type=int, default=CompressionVAE().neighbor_samples)
    parser.add_argument("--beta", type=float, default=CompressionVAE().beta)
    parser.add_argument("--dropout", type=float, default=CompressionVAE().dropout)
    parser.add_argument("--hidden-layer-sizes", type=int, nargs="+", default=None,
                        help="encoder widths (default: the estimator's for the data)")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--neighbor-objective", choices=["umap", "tsne"], default=CompressionVAE().neighbor_objective)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (to run two sweeps at once)")
    parser.add_argument("--out", default=None, help="JSON-lines file to append the result to")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    row = {**vars(args), **fit_and_evaluate(args)}
    print(f"{'10-NN':>6} {'train':>6} {'trust':>6} {'train':>6} {'MSE':>7} {'ELBO':>8} {'fit s':>7}")
    print(f"{row['knn']:>6.3f} {row['train_knn']:>6.3f} "
          f"{row['trustworthiness']:>6.3f} {row['train_trustworthiness']:>6.3f} "
          f"{row['mse']:>7.4f} {row['test_elbo']:>8.1f} {row['fit_seconds']:>7.1f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
    return row


if __name__ == "__main__":
    main()
