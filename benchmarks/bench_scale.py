"""Data larger than the memory budget: streaming fit and transform, and torchrun with 2 processes.

Creates a dataset on disk (by default 2,000,000 x 256 float32 = 2.05 GB), once as one .npy
file and once as a directory of 100 .npy shards, with structure worth embedding (an
8-dimensional latent manifold mapped non-linearly to 256 features, plus noise). Each
measurement runs in a fresh process so that its peak resident memory
(``VmHWM`` of ``/proc/self/status``) is its own:

1. ``in-memory``: the same model fitted on the first 10% of the rows loaded as an array,
   the reference for training speed;
2. ``stream-npy`` and ``stream-dir``: fit on the .npy file and on the shard directory;
3. ``transform``: the fitted model embeds the whole .npy file into a .npy file on disk
   (:func:`cvae.files.transform_to_npy`);
4. ``torchrun-2``: ``torchrun --nproc_per_node=2`` fits the .npy file with the same global
   batch and steps as ``stream-npy``, i.e. after the same number of samples seen.

Every fit holds out 1% of its rows (20,000 for the full file) for validation and trains at
a constant learning rate, so the validation losses compare like for like.

With ``--neighbors``, the neighbour option at scale instead (issue #38): generated rows in
20 overlapping clusters (``--rows`` x ``--features``, and 10,000 test rows) are fitted from
the ``.npy`` file with the default neighbour term and ``--steps`` steps, and once more with
``neighbor_weight=0`` (the plain VAE). Each fit reports its wall time (the graph included)
and the graph's share of it, peak RSS beyond the process's RSS after importing torch and
cvae, the test rows' 10-NN accuracy (cluster labels, 10-NN fitted on 50,000 training rows'
embedding), and for the neighbour fit the recall@15 of its stored graph against an exact
search, on 1,000 training rows.

Usage::

    python benchmarks/bench_scale.py --out benchmarks/results/scale_cpu.json
    python benchmarks/bench_scale.py --neighbors --rows 500000 --features 64 --steps 3000 \
        --out benchmarks/results/scale_neighbors_500k.json

Targets (issue 5): peak RSS under 1 GB while fitting the 2 GB dataset; streaming training at
>= 0.7x the in-memory samples/s; the 2-process run's validation loss within 2% of one
process's. The page cache may hold the file (it is the operating system's, not the
process's, memory and is not counted in RSS); on a machine with less memory than the data,
reads come from the disk instead.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

N_LATENT_TRUE = 8
SHARDS = 100
TARGETS = {"peak_rss_mb": 1024, "stream_vs_memory": 0.7, "torchrun_loss_rel_diff": 0.02}


# ---------------------------------------------------------------- the dataset


def make_dataset(workdir, n_rows, n_features, seed=0):
    """Write ``X.npy`` and ``shards/`` under ``workdir`` a shard at a time; return their paths."""
    workdir = Path(workdir)
    npy, shards = workdir / "X.npy", workdir / "shards"
    if npy.exists() and np.load(npy, mmap_mode="r").shape == (n_rows, n_features):
        return npy, shards
    shutil.rmtree(shards, ignore_errors=True)
    shards.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(N_LATENT_TRUE, 64)).astype(np.float32)
    W2 = (rng.normal(size=(64, n_features)) / 8).astype(np.float32)
    shard_rows = -(-n_rows // SHARDS)
    with open(npy, "wb") as f:
        header = {"descr": "<f4", "fortran_order": False, "shape": (n_rows, n_features)}
        np.lib.format.write_array_header_1_0(f, header)
        for i, start in enumerate(range(0, n_rows, shard_rows)):
            z = rng.normal(size=(min(shard_rows, n_rows - start), N_LATENT_TRUE)).astype(np.float32)
            X = np.tanh(z @ W1) @ W2 + 0.1 * rng.normal(size=(len(z), n_features)).astype(np.float32)
            f.write(X.astype(np.float32).tobytes())
            np.save(shards / f"part{i:04d}.npy", X.astype(np.float32))
    return npy, shards


def make_clusters(workdir, n_rows, n_features, n_test=10_000, n_clusters=20, seed=0):
    """Write ``X.npy``, ``y.npy``, ``X_test.npy`` and ``y_test.npy``: rows of overlapping
    Gaussian clusters in 8 dimensions, mapped non-linearly to ``n_features``, a block at a
    time. Return the training file's path."""
    workdir = Path(workdir)
    npy = workdir / "X.npy"
    if npy.exists() and np.load(npy, mmap_mode="r").shape == (n_rows, n_features):
        return npy
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=1.5, size=(n_clusters, N_LATENT_TRUE)).astype(np.float32)
    W1 = rng.normal(size=(N_LATENT_TRUE, 64)).astype(np.float32)
    W2 = (rng.normal(size=(64, n_features)) / 8).astype(np.float32)

    def rows(n):
        y = rng.integers(n_clusters, size=n)
        z = centres[y] + rng.normal(size=(n, N_LATENT_TRUE)).astype(np.float32)
        X = np.tanh(z @ W1) @ W2 + 0.1 * rng.normal(size=(n, n_features)).astype(np.float32)
        return X.astype(np.float32), y

    labels = []
    with open(npy, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (n_rows, n_features)})
        for start in range(0, n_rows, 20_000):  # small blocks: the processes this one starts inherit its peak RSS
            X, y = rows(min(20_000, n_rows - start))
            f.write(X.tobytes())
            labels.append(y)
    np.save(workdir / "y.npy", np.concatenate(labels))
    X_test, y_test = rows(n_test)
    np.save(workdir / "X_test.npy", X_test)
    np.save(workdir / "y_test.npy", y_test)
    return npy


def rss_mb(field="VmRSS"):
    """This process's resident memory (``VmRSS``) or its peak (``VmHWM``), in MB. Unlike
    ``ru_maxrss``, which a process started by ``subprocess`` inherits from its parent, the
    peak is the process's own."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def neighbor_worker(args):
    """One neighbour (or plain) fit of the generated file, measured; printed as JSON."""
    import torch
    from sklearn.neighbors import KNeighborsClassifier

    import cvae.data.graph
    from cvae import CompressionVAE
    from cvae.neighbors.search import nearest_rows
    from cvae.training import LogDir

    baseline = rss_mb()
    workdir = Path(args.data).parent
    graph_seconds = []
    search = cvae.data.graph.rows_graph

    searched = {}

    def timed(rows, normalize, n_neighbors, *rest, **kw):
        started = time.perf_counter()
        graph = search(rows, normalize, n_neighbors, *rest, **kw)
        graph_seconds.append((n_neighbors, time.perf_counter() - started, len(rows)))
        searched[n_neighbors] = rows.indices
        return graph

    cvae.data.graph.rows_graph = timed
    params = dict(max_steps=args.steps, random_state=0, logdir=args.logdir)
    if args.fit_batch_size is not None:
        params["batch_size"] = args.fit_batch_size
    if args.worker == "plain":
        params["neighbor_weight"] = 0
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = CompressionVAE(**params).fit(args.data)
    wall = time.perf_counter() - started
    result = {"run": args.worker, "rank": 0, "wall_seconds": wall, "steps": vae.n_steps_,
              "train_seconds": vae.history_[-1]["elapsed_seconds"],
              "graph_seconds": sum(seconds for _, seconds, _ in graph_seconds),  # training 15-NN and validation 1-NN
              "graph_seconds_by_k": graph_seconds,  # (k, seconds, rows searched)
              "baseline_rss_mb": baseline, "peak_rss_mb": rss_mb("VmHWM"),
              "threads": torch.get_num_threads()}
    result["peak_rss_beyond_baseline_mb"] = result["peak_rss_mb"] - baseline
    result["fit_seconds_per_million_rows"] = wall / (np.load(args.data, mmap_mode="r").shape[0] / 1e6)
    X = np.load(args.data, mmap_mode="r")
    y = np.load(workdir / "y.npy")
    rng = np.random.default_rng(1)
    reference = np.sort(rng.choice(len(X), min(50_000, len(X)), replace=False))
    knn = KNeighborsClassifier(10).fit(vae.transform(np.asarray(X[reference])), y[reference])
    Z_test = vae.transform(np.load(workdir / "X_test.npy"))
    result["test_knn10"] = float(knn.score(Z_test, np.load(workdir / "y_test.npy")))
    if args.worker == "neighbors":
        logdir = LogDir(args.logdir)
        train = searched[max(searched)]  # the training rows the graph was searched among (all, or the budget's sample)
        with np.load(logdir.file(logdir.NEIGHBORS)) as saved:
            graph = saved["graph"]
        queries = np.sort(rng.choice(len(train), 1000, replace=False))
        # normalize="global" scales every feature alike: the raw rows' neighbours are the model's
        rows = torch.from_numpy(np.asarray(X[train]))
        exact = nearest_rows(rows[queries], rows, graph.shape[1] + 1)[1].numpy()[:, 1:]
        found = [len(np.intersect1d(a, b)) for a, b in zip(graph[queries], exact)]
        result["graph_recall"] = float(np.mean(found) / graph.shape[1])
    print("RESULT " + json.dumps(result), flush=True)


def neighbors_main(args, workdir):
    started = time.perf_counter()
    npy = make_clusters(workdir, args.rows, args.features)
    print(f"dataset: {args.rows:,} x {args.features} float32 in 20 clusters, {npy.stat().st_size / 1e9:.2f} GB "
          f"({time.perf_counter() - started:.0f} s to write)", flush=True)
    names = ("neighbors",) if args.skip_plain else ("neighbors", "plain")
    runs = [run_worker(name, npy, workdir / f"run-{name}", args) for name in names]
    print(f"\n{'run':<10} {'wall s':>7} {'graph s':>7} {'s per 1M rows':>13} {'RSS+ MB':>8} {'test 10-NN':>10} "
          f"{'recall@15':>9}")
    for run in runs:
        recall = f"{run['graph_recall']:.3f}" if "graph_recall" in run else ""
        print(f"{run['run']:<10} {run['wall_seconds']:>7.1f} {run['graph_seconds']:>7.1f} "
              f"{run['fit_seconds_per_million_rows']:>13.1f} {run['peak_rss_beyond_baseline_mb']:>8.0f} "
              f"{run['test_knn10']:>10.3f} {recall:>9}")
    by_name = {run["run"]: run for run in runs}
    fit = by_name["neighbors"]
    targets = {
        "neighbour fit from a file in at most 8 minutes, graph included": fit["wall_seconds"] <= 480,
        "peak RSS at most 1.5 GB beyond torch's own": fit["peak_rss_beyond_baseline_mb"] <= 1536,
        "cluster 10-NN above the plain VAE's": "plain" in by_name
        and fit["test_knn10"] > by_name["plain"]["test_knn10"],
        "recall@15 at least 0.9": fit["graph_recall"] >= 0.9,
    }
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'MISSED'}")
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_time_to_quality import machine

    result = {"machine": machine(), "rows": args.rows, "features": args.features, "steps": args.steps,
              "batch_size": args.fit_batch_size, "runs": runs, "targets": targets}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---------------------------------------------------------------- one measurement per process


def fit_params(args):
    return dict(
        batch_size=args.batch_size,
        max_steps=args.steps,
        validation_interval=args.steps // 4,
        validation_fraction=0.01,
        learning_rate="constant",
        random_state=0,
        neighbor_weight=0,  # streaming throughput of the plain VAE; --neighbors measures the graph
    )


def worker(args):
    """Run one measurement in this process and print it as one JSON line."""
    import torch

    from cvae import CompressionVAE
    from cvae.files import transform_to_npy

    if args.worker in ("neighbors", "plain"):
        return neighbor_worker(args)
    rank = int(os.environ.get("RANK", 0))
    started = time.perf_counter()
    result = {"run": args.worker, "rank": rank}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.worker == "transform":
            vae = CompressionVAE.load(args.logdir)
            started = time.perf_counter()
            transform_to_npy(vae, args.data, Path(args.logdir) / "Z.npy")
            result["rows"] = int(np.load(Path(args.logdir) / "Z.npy", mmap_mode="r").shape[0])
        else:
            if args.worker == "in-memory":
                X = np.load(args.data, mmap_mode="r")
                data = np.array(X[: len(X) // 10])  # 10% of the rows, in memory
                params = dict(fit_params(args), validation_fraction=0.1)  # as many validation rows
            else:
                data, params = args.data, fit_params(args)
            vae = CompressionVAE(**params, logdir=args.logdir).fit(data)
            result.update(
                steps=vae.n_steps_,
                train_seconds=vae.history_[-1]["elapsed_seconds"],
                best_validation_loss=vae.best_validation_loss_,
                final_validation_loss=vae.history_[-1]["validation_loss"],
                threads=torch.get_num_threads(),
            )
            result["train_samples_per_s"] = vae.n_steps_ * args.batch_size / result["train_seconds"]
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = rss_mb("VmHWM")
    if args.worker == "transform":
        result["samples_per_s"] = result["rows"] / result["wall_seconds"]
    print("RESULT " + json.dumps(result), flush=True)


def run_worker(name, data, logdir, args, torchrun=False):
    script = [str(Path(__file__).resolve()), "--worker", name, "--data", str(data), "--logdir", str(logdir),
              "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    if args.fit_batch_size is not None:
        script += ["--fit-batch-size", str(args.fit_batch_size)]
    if torchrun:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *script]
    else:
        command = [sys.executable, *script]
    if name != "transform":  # the transform loads the run that stream-npy fitted
        shutil.rmtree(logdir, ignore_errors=True)
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-4000:]}")
    rows = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    rows.sort(key=lambda row: row["rank"])
    result = dict(rows[0])
    result["peak_rss_mb"] = max(row["peak_rss_mb"] for row in rows)  # the largest of the processes
    return result


# ---------------------------------------------------------------- report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workdir", default=None, help="where the dataset is written (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the dataset for the next run")
    parser.add_argument("--skip-torchrun", action="store_true")
    parser.add_argument("--runs", nargs="+", choices=["in-memory", "stream-npy", "stream-dir", "transform"],
                        help="only these runs (default: all; transform needs stream-npy)")
    parser.add_argument("--neighbors", action="store_true", help="the neighbour option on generated clusters")
    parser.add_argument("--skip-plain", action="store_true", help="with --neighbors: no plain VAE to compare")
    parser.add_argument("--fit-batch-size", type=int, default=None,
                        help="with --neighbors: the fits' batch_size (default: the estimator's)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--logdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="cvae_scale_"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.neighbors:
        try:
            return neighbors_main(args, workdir)
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    try:
        started = time.perf_counter()
        npy, shards = make_dataset(workdir, args.rows, args.features)
        data_gb = npy.stat().st_size / 1e9
        print(f"dataset: {args.rows:,} x {args.features} float32 = {data_gb:.2f} GB as {npy.name} and as "
              f"{len(list(shards.iterdir()))} shards ({time.perf_counter() - started:.0f} s to write)")
        plan = [("in-memory", npy, "run-memory"), ("stream-npy", npy, "run-npy"), ("stream-dir", shards, "run-dir"),
                ("transform", npy, "run-npy")]
        runs = [run_worker(name, data, workdir / run, args) for name, data, run in plan
                if args.runs is None or name in args.runs]
        if not args.skip_torchrun:
            runs.append(run_worker("torchrun-2", npy, workdir / "run-torchrun", args, torchrun=True))
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report(runs, args, data_gb)


def report(runs, args, data_gb):
    by_name = {run["run"]: run for run in runs}
    memory = by_name["in-memory"]["train_samples_per_s"] if "in-memory" in by_name else float("nan")
    print(f"\n{'run':<12} {'samples/s':>10} {'vs memory':>9} {'wall s':>7} {'peak RSS MB':>11} {'best valid':>10}")
    for run in runs:
        speed = run.get("train_samples_per_s", run.get("samples_per_s"))
        ratio = f"{speed / memory:.2f}" if "train_samples_per_s" in run else ""
        loss = f"{run['best_validation_loss']:.2f}" if "best_validation_loss" in run else ""
        print(f"{run['run']:<12} {speed:>10,.0f} {ratio:>9} {run['wall_seconds']:>7.1f} {run['peak_rss_mb']:>11.0f} "
              f"{loss:>10}")
    streamed = [by_name[name] for name in ("stream-npy", "stream-dir", "transform") if name in by_name]
    targets = {
        "peak RSS < 1 GB fitting and transforming the data on disk": all(
            run["peak_rss_mb"] < TARGETS["peak_rss_mb"] for run in streamed
        ),
        "streaming >= 0.7x in-memory samples/s": all(
            run["train_samples_per_s"] >= TARGETS["stream_vs_memory"] * memory for run in streamed
            if "train_samples_per_s" in run
        ),
    }
    if "torchrun-2" in by_name:
        diff = by_name["torchrun-2"]["best_validation_loss"] / by_name["stream-npy"]["best_validation_loss"] - 1
        print(f"torchrun-2 vs one process, same samples seen: validation loss {100 * diff:+.2f}%")
        within = abs(diff) <= TARGETS["torchrun_loss_rel_diff"]
        targets["torchrun 2 processes: validation loss within 2% of one"] = within
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'MISSED'}")
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "rows": args.rows,
        "features": args.features,
        "data_gb": data_gb,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "runs": runs,
        "targets": targets,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
