"""Batch integration, the baseline (issue 51): how far batches separate embeddings today.

Generated counts in batches with known effects (:func:`cvae.datasets.make_batched_counts`:
per-batch per-feature factors, library-size shifts, batch-dependent cluster proportions),
embedded in 2-D by PCA of ``log1p`` counts and by ``CompressionVAE`` (the negative binomial
likelihood, otherwise the defaults), which has no covariates yet. Metrics, as scIB defines
them (Luecken et al. 2022), computed with scikit-learn:

- bio: cell-type 10-NN accuracy (3-fold cross-validated) and label ASW, ``(silhouette + 1) / 2``;
- batch: batch ASW, the mean over cell types of ``1 - |silhouette|`` of the batch labels
  within the type (1: batches mixed), and the batch's 10-NN accuracy (chance: one over the
  number of batches; lower is better mixed).

Harmony, scVI and the iLISI/cLISI metrics (harmonypy's ``compute_lisi``) join this table
with the covariates that issue 51 builds.

Usage::

    python benchmarks/bench_integration.py --out benchmarks/results/integration_baseline.json
"""

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.metrics import silhouette_samples, silhouette_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).parent))
from bench_time_to_quality import machine, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402
from cvae.datasets import make_batched_counts  # noqa: E402


def metrics(Z, labels, batch):
    """scIB's bio and batch scores of the embedding ``Z`` (see the module's docstring)."""
    batch_asw = np.mean([np.mean(1 - np.abs(silhouette_samples(Z[labels == c], batch[labels == c])))
                         for c in np.unique(labels) if len(np.unique(batch[labels == c])) > 1])
    return {
        "celltype_knn": float(cross_val_score(KNeighborsClassifier(10), Z, labels, cv=3).mean()),
        "label_asw": float((silhouette_score(Z, labels) + 1) / 2),
        "batch_asw": float(batch_asw),
        "batch_knn": float(cross_val_score(KNeighborsClassifier(10), Z, batch, cv=3).mean()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=4000)
    parser.add_argument("--genes", type=int, default=500)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-effect", type=float, default=0.5)
    parser.add_argument("--max-steps", type=int, default=None, help="the VAE's budget (default: the estimator's)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    X, labels, batch, _ = make_batched_counts(args.cells, args.genes, n_batches=args.batches,
                                              batch_effect=args.batch_effect, random_state=0)
    rows = []
    print(f"{'method':<26} {'fit s':>6} {'type 10-NN':>10} {'label ASW':>9} {'batch ASW':>9} {'batch 10-NN':>11}")
    started = time.perf_counter()
    Z = TruncatedSVD(2, random_state=0).fit_transform(X.log1p())
    rows.append({"method": "PCA of log1p counts", "fit_seconds": time.perf_counter() - started,
                 **metrics(Z, labels, batch)})
    budget = {} if args.max_steps is None else {"max_steps": args.max_steps}
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Z = CompressionVAE(likelihood="negative_binomial", random_state=0, **budget).fit_transform(X)
    rows.append({"method": "CompressionVAE, no covariates", "fit_seconds": time.perf_counter() - started,
                 **metrics(Z, labels, batch)})
    for row in rows:
        print(f"{row['method']:<26} {row['fit_seconds']:>6.1f} {row['celltype_knn']:>10.3f} {row['label_asw']:>9.3f} "
              f"{row['batch_asw']:>9.3f} {row['batch_knn']:>11.3f}")
    print(f"batch 10-NN chance: {1 / args.batches:.3f}")
    write_json(args.out, {"machine": machine(), "data": vars(args), "rows": rows})
    return rows


if __name__ == "__main__":
    main()
