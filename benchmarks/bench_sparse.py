"""Sparse counts at scale: memory, throughput and cluster recovery, side by side in one run.

A CSR matrix (default 500,000 rows x 20,000 features, about 0.5% non-zero) is generated
from a known latent model (:func:`cvae.datasets.make_counts`: clusters, log-normal library
sizes, negative-binomial noise) and saved as ``.npz`` files: training rows, ``--test-rows``
held-out rows, and a sample of training rows to fit the 10-NN classifiers on. Each method
then runs in a fresh process, so that its peak resident memory is its own:

- ``poisson``, ``negative_binomial``: ``CompressionVAE`` with that likelihood on the counts;
- ``gaussian``: ``CompressionVAE(likelihood="gaussian")`` on ``log1p`` of the counts;
- ``svd-umap``: ``TruncatedSVD(50)`` on ``log1p`` of the counts, then UMAP (when
  ``umap-learn`` is installed) fitted on ``--umap-rows`` of the training rows.

Quality on the test rows: adjusted Rand index of k-means (as many clusters as generated) on
the 2-D embedding, and 10-NN accuracy of a classifier fitted on the embedded training
sample. Memory: the process's peak resident memory (``VmHWM``), against the CSR's size and
the footprint of the same model (weights, optimizer, activations, Python and torch),
measured as the peak of a 20-step fit on the small sample first; the first VAE method
also transforms every training row. Throughput: one process fits the same model on the
same ``--throughput-rows`` rows given as CSR and as a dense array, alternately, and reports
rows per second of each, of the training loop and of the whole ``fit``.

Usage::

    python benchmarks/bench_sparse.py --out benchmarks/results/sparse_cpu.json

``--small`` runs a minute-long version (the tests run it).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import machine, write_json  # noqa: E402

VAE_METHODS = ("poisson", "negative_binomial", "gaussian")


def _memory_mb(field):
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process in MB. Not ``ru_maxrss``: Linux
    carries that over from the parent across fork and exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _csr_mb(X):
    return (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20


def _vae_params(args):
    return dict(n_components=2, hidden_layer_sizes=tuple(args.hidden), batch_size=args.batch_size,
                eval_batch_size=args.batch_size, max_steps=args.steps, validation_interval=args.validation_interval,
                validation_fraction=args.validation_fraction, learning_rate="constant", neighbor_weight=0,
                random_state=0)


def child_vae(method, work, args):
    """Fit ``method`` on the training file; embed the test rows and the training sample."""
    import torch  # noqa: F401 (in the baseline: cvae imports torch at its first use)

    from cvae.estimator import CompressionVAE

    suffix = "_log1p" if method == "gaussian" else ""
    # The model's own footprint (weights, Adam, gradients, activations, allocator pools):
    # the high-water mark of a short fit of the same model on the small training sample.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CompressionVAE(likelihood=method, **dict(_vae_params(args), max_steps=20, validation_interval=10)).fit(
            str(work / f"sample{suffix}.npz"))
    model_hwm = _memory_mb("VmHWM") - _csr_mb(sp.load_npz(work / f"sample{suffix}.npz"))
    vae = CompressionVAE(likelihood=method, **_vae_params(args))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.fit(str(work / f"train{suffix}.npz"))
    fit_seconds = time.perf_counter() - start
    after_fit = _memory_mb("VmHWM")
    transform_seconds = None
    if args.transform_all:
        start = time.perf_counter()
        vae.transform(str(work / f"train{suffix}.npz"))
        transform_seconds = time.perf_counter() - start
    n_params = sum(p.numel() for p in vae.module_.parameters())
    np.save(work / f"{method}_test.npy", vae.transform(str(work / f"test{suffix}.npz")))
    np.save(work / f"{method}_sample.npy", vae.transform(str(work / f"sample{suffix}.npz")))
    return {"fit_seconds": fit_seconds, "steps": vae.n_steps_, "model_and_runtime_mb": model_hwm,
            "peak_rss_after_fit_mb": after_fit, "peak_rss_mb": _memory_mb("VmHWM"), "model_parameters": n_params,
            "transform_all_seconds": transform_seconds}


def child_svd_umap(work, args):
    """TruncatedSVD on log1p counts, then UMAP on a sample of its training rows."""
    from sklearn.decomposition import TruncatedSVD

    try:
        import umap  # noqa: F401 (in the baseline, as torch is for the VAE)
    except ImportError:
        umap = None
    baseline = _memory_mb("VmRSS")
    train = sp.load_npz(work / "train_log1p.npz")
    start = time.perf_counter()
    svd = TruncatedSVD(50, random_state=0).fit(train)
    svd_seconds = time.perf_counter() - start
    rows = np.random.default_rng(0).permutation(train.shape[0])[: args.umap_rows]
    fit_rows = svd.transform(train[np.sort(rows)])
    del train
    result = {"svd_seconds": svd_seconds, "model_and_runtime_mb": baseline, "umap_rows": len(rows)}
    test, sample = (svd.transform(sp.load_npz(work / f"{name}_log1p.npz")) for name in ("test", "sample"))
    if umap is None:
        np.save(work / "svd-umap_test.npy", test[:, :2])
        np.save(work / "svd-umap_sample.npy", sample[:, :2])
        return dict(result, fit_seconds=svd_seconds, umap="not installed: the first two SVD components",
                    peak_rss_mb=_memory_mb("VmHWM"))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(random_state=0).fit(fit_rows)
        np.save(work / "svd-umap_test.npy", reducer.transform(test))
        np.save(work / "svd-umap_sample.npy", reducer.transform(sample))
    result["umap_seconds"] = time.perf_counter() - start
    return dict(result, fit_seconds=svd_seconds + result["umap_seconds"], peak_rss_mb=_memory_mb("VmHWM"))


def child_throughput(work, args):
    """Training rows per second of the same model on the same rows as CSR and as a dense
    array: the training loop's own clock (``history_``), and the whole ``fit``, which adds
    the checks and statistics pass over the input."""
    from cvae import CompressionVAE

    X = sp.load_npz(work / "sample.npz")[: args.throughput_rows]
    inputs = {"sparse": X, "dense": X.toarray()}
    params = dict(_vae_params(args), likelihood=args.throughput_likelihood, max_steps=args.throughput_steps,
                  validation_interval=10**9, validation_fraction=0.01)
    rows = args.throughput_steps * args.batch_size
    best = {"training": dict.fromkeys(inputs, 0.0), "fit": dict.fromkeys(inputs, 0.0)}
    for _ in range(2):  # alternate, and keep each one's best: the machine is shared
        for name, data in inputs.items():
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vae = CompressionVAE(**params).fit(data)
            fit_seconds = time.perf_counter() - start
            best["fit"][name] = max(best["fit"][name], rows / fit_seconds)
            best["training"][name] = max(best["training"][name], rows / vae.history_[-1]["elapsed_seconds"])
    return {"rows_per_s": best["training"], "ratio": best["training"]["sparse"] / best["training"]["dense"],
            "fit_rows_per_s": best["fit"], "fit_ratio": best["fit"]["sparse"] / best["fit"]["dense"],
            "rows": X.shape[0], "likelihood": args.throughput_likelihood}


def generate(work, args):
    from cvae.datasets import make_counts

    start = time.perf_counter()
    X, labels, _ = make_counts(args.rows + args.test_rows, args.features, n_clusters=args.clusters,
                               n_expressed=args.expressed, separation=args.separation, random_state=0)
    seconds = time.perf_counter() - start
    n_train = args.rows
    sample = np.sort(np.random.default_rng(1).permutation(n_train)[: args.sample_rows])
    parts = {"train": X[:n_train], "test": X[n_train:], "sample": X[sample]}
    del X
    for name, part in parts.items():
        sp.save_npz(work / f"{name}.npz", part, compressed=False)
        sp.save_npz(work / f"{name}_log1p.npz", part.log1p(), compressed=False)
    train = parts["train"]
    return {"rows": n_train, "test_rows": args.test_rows, "features": args.features, "clusters": args.clusters,
            "density": train.nnz / (train.shape[0] * train.shape[1]), "nonzeros_per_row": train.nnz / train.shape[0],
            "csr_mb": _csr_mb(train), "dense_mb": 4 * train.shape[0] * train.shape[1] / 2**20,
            "generate_seconds": seconds}, labels[n_train:], labels[sample]


def score(work, method, test_labels, sample_labels, n_clusters):
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score
    from sklearn.neighbors import KNeighborsClassifier

    test, sample = np.load(work / f"{method}_test.npy"), np.load(work / f"{method}_sample.npy")
    knn = KNeighborsClassifier(10).fit(sample, sample_labels).score(test, test_labels)
    clusters = KMeans(n_clusters, n_init=10, random_state=0).fit_predict(test)
    return {"knn": float(knn), "ari": float(adjusted_rand_score(test_labels, clusters))}


def _run_child(kind, work, argv):
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--work", str(work), *argv],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=500_000)
    p.add_argument("--test-rows", type=int, default=10_000)
    p.add_argument("--sample-rows", type=int, default=50_000, help="training rows the 10-NN classifier is fitted on")
    p.add_argument("--features", type=int, default=20_000)
    p.add_argument("--expressed", type=int, default=800, help="features each cluster expresses (sets the density)")
    p.add_argument("--clusters", type=int, default=10)
    p.add_argument("--separation", type=float, default=0.4, help="log-scale spread of the clusters' fold changes")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 128])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--validation-interval", type=int, default=500)
    p.add_argument("--validation-fraction", type=float, default=0.02)
    p.add_argument("--umap-rows", type=int, default=100_000)
    p.add_argument("--throughput-rows", type=int, default=20_000)
    p.add_argument("--throughput-steps", type=int, default=40)
    p.add_argument("--throughput-likelihood", default="poisson")
    p.add_argument("--methods", nargs="*", default=[*VAE_METHODS, "svd-umap"],
                   help="methods to compare (none: only the throughput measurement)")
    p.add_argument("--small", action="store_true", help="a minute-long run on small data")
    p.add_argument("--out", help="JSON file to write")
    p.add_argument("--work", help="folder for the generated files (default: a temporary one)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--transform-all", action="store_true", help=argparse.SUPPRESS)
    return p


SMALL = ["--rows", "3000", "--separation", "1.0", "--test-rows", "600", "--sample-rows", "1000", "--features", "300",
         "--expressed", "60",
         "--clusters", "4", "--hidden", "32", "16", "--steps", "150", "--validation-interval", "50",
         "--validation-fraction", "0.1", "--umap-rows", "1000", "--throughput-rows", "1000",
         "--throughput-steps", "10"]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--small" in argv:
        argv = SMALL + argv
    args = parser().parse_args(argv)
    if args.child:
        work = Path(args.work)
        if args.child == "throughput":
            result = child_throughput(work, args)
        elif args.child == "svd-umap":
            result = child_svd_umap(work, args)
        else:
            result = child_vae(args.child, work, args)
        print(json.dumps(result))
        return result
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, test_labels, sample_labels = generate(work, args)
        print(f"{data['rows']:,} x {data['features']:,} CSR, {100 * data['density']:.2f}% non-zero, "
              f"{data['csr_mb']:.0f} MB ({data['dense_mb'] / 1024:.1f} GB dense), generated in "
              f"{data['generate_seconds']:.0f} s", flush=True)
        child_argv = [a for a in argv if a not in ("--small",)]
        child_argv = [a for i, a in enumerate(child_argv) if a != "--out" and (i == 0 or child_argv[i - 1] != "--out")]
        rows = {}
        first_vae = True
        for method in args.methods:
            extra = ["--transform-all"] if method in VAE_METHODS and first_vae else []
            first_vae = first_vae and method not in VAE_METHODS
            rows[method] = _run_child(method, work, child_argv + extra)
            rows[method].update(score(work, method, test_labels, sample_labels, args.clusters))
            row = rows[method]
            over = (row["peak_rss_mb"] - row["model_and_runtime_mb"]) / data["csr_mb"]
            row["rss_over_csr"] = over
            print(f"{method:>18}: fit {row['fit_seconds']:7.1f} s, 10-NN {row['knn']:.3f}, ARI {row['ari']:.3f}, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB = model and runtime {row['model_and_runtime_mb']:.0f} MB "
                  f"+ {over:.2f}x the CSR", flush=True)
        throughput = _run_child("throughput", work, child_argv)
        print(f"training rows/s, same {throughput['rows']:,} rows and model ({throughput['likelihood']}): sparse "
              f"{throughput['rows_per_s']['sparse']:.0f}, dense {throughput['rows_per_s']['dense']:.0f}, ratio "
              f"{throughput['ratio']:.2f} (whole fit: {throughput['fit_ratio']:.2f})")
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "work", "child", "transform_all")}
    document = {"machine": machine(), "data": data, "settings": settings,
                "methods": rows, "throughput": throughput}
    write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
