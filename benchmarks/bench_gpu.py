"""The GPU path end to end: fit time and quality, training and transform rates, and a
GPU-trained model used on the CPU.

On ``--device`` (default ``cuda``): fits a 2-D ``CompressionVAE`` plain and with the
neighbour option (``neighbor_weight=0.4, neighbor_objective="tsne"``) on MNIST (``--data``)
or digits, and reports fit seconds, test 10-NN accuracy and trustworthiness(10); measures
training samples/s at each ``--batch-sizes`` in float32 and bfloat16, and ``transform``
rows/s; times the neighbour graph of ``--graph-rows`` generated rows x 64 (50 Gaussian
clusters) by the exact blockwise search on the device (what a fit on a GPU uses); then
pickles the plain model, loads it on the CPU and checks that its ``transform`` matches the
device's (to float32 tolerance). ``--small`` runs it in seconds on any device
(digits, few steps), which is how the tests run it on a CPU.

Usage on a machine with a GPU (under 5 minutes)::

    python benchmarks/bench_gpu.py --data ../shared/datasets/mnist.npz --out benchmarks/results/gpu.json
"""

import argparse
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

import bench_neighbors  # noqa: E402
from bench_time_to_quality import machine, score, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402

SETTINGS = {"plain": {"neighbor_weight": 0}, "neighbours": {"neighbor_weight": 0.4, "neighbor_objective": "tsne"}}


def fit(setting, X_train, device, **params):
    vae = CompressionVAE(n_components=2, random_state=0, device=device, **SETTINGS[setting], **params)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.fit(X_train)
    if vae.device_.type == "cuda":
        torch.cuda.synchronize()
    return vae, time.perf_counter() - started


def training_rate(X, device, batch_size, precision, steps, short=5):
    """Samples/s of training steps: a fit of ``steps`` steps less one of ``short`` steps, so
    that what every fit does once (statistics, set-up, checkpoint) cancels out."""
    params = dict(batch_size=batch_size, precision=precision, learning_rate="constant", validation_interval=10**6)
    fit("plain", X, device, max_steps=short, **params)  # warm-up
    _, few = fit("plain", X, device, max_steps=short, **params)
    _, many = fit("plain", X, device, max_steps=steps, **params)
    return batch_size * (steps - short) / max(many - few, 1e-9)


def transform_rate(vae, X, repeats=3):
    vae.transform(X)
    started = time.perf_counter()
    for _ in range(repeats):
        vae.transform(X)
    return repeats * len(X) / (time.perf_counter() - started)


def graph_seconds(n_rows, device, n_features=64):
    """Seconds of the exact blockwise neighbour search of ``n_rows`` generated rows on ``device``."""
    from cvae.neighbors.search import neighbor_graph

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=3, size=(50, n_features)).astype(np.float32)
    X = centres[rng.integers(50, size=n_rows)] + rng.normal(size=(n_rows, n_features)).astype(np.float32)
    neighbor_graph(X[:1000], 15, device=device, method="exact")  # warm up the device
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    neighbor_graph(X, 15, device=device, method="exact")
    return {"rows": n_rows, "features": n_features, "seconds": time.perf_counter() - started, "method": "exact"}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mnist.npz (default: digits)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--rate-steps", type=int, default=200, help="steps timed for each training rate")
    parser.add_argument("--graph-rows", type=int, default=1_000_000, help="rows of the timed neighbour graph")
    parser.add_argument("--small", action="store_true", help="digits, few steps: a check that it all runs")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    datasets = bench_neighbors.load_datasets(None if args.small else args.data)
    name = "mnist" if args.data and not args.small else "digits"
    X_train, X_test, y_train, y_test = datasets[name]
    budget = {"max_steps": 60, "validation_interval": 30} if args.small else {}
    quality = {}
    for setting in SETTINGS:
        vae, seconds = fit(setting, X_train, args.device, **budget)
        Z_test = vae.transform(X_test)
        quality[setting] = {**score(vae.transform(X_train), Z_test, X_test, y_train, y_test,
                                    vae.inverse_transform(Z_test)), "fit_seconds": seconds, "steps": vae.n_steps_}
        print(f"{name} {setting:10s} 10-NN {quality[setting]['knn']:.3f}  trust "
              f"{quality[setting]['trustworthiness']:.3f}  fit {seconds:.1f} s ({vae.n_steps_} steps)", flush=True)
        if setting == "plain":
            plain = vae
    steps = 10 if args.small else args.rate_steps
    rates = {precision: {batch: training_rate(X_train, args.device, batch, precision, steps)
                         for batch in args.batch_sizes} for precision in ("float32", "bfloat16")}
    for precision, by_batch in rates.items():
        print(f"training samples/s, {precision}: " + ", ".join(f"batch {b}: {r:,.0f}" for b, r in by_batch.items()))
    graph = graph_seconds(2000 if args.small else args.graph_rows, plain.device_)
    print(f"neighbour graph, {graph['rows']:,} x 64, exact on {plain.device_}: {graph['seconds']:.1f} s")
    rows = np.concatenate([X_train, X_test])
    transform = transform_rate(plain, rows)
    on_cpu = pickle.loads(pickle.dumps(plain))
    on_cpu.set_params(device="cpu")
    on_cpu = pickle.loads(pickle.dumps(on_cpu))  # rebuilt on the CPU, as on a machine without a GPU
    difference = float(np.abs(on_cpu.transform(X_test) - plain.transform(X_test)).max())
    print(f"transform rows/s: {transform:,.0f}; CPU copy differs by at most {difference:.2e}")
    document = {"machine": machine(), "device": str(plain.device_), "dataset": name, "quality": quality,
                "training_samples_per_s": {p: {str(b): r for b, r in by.items()} for p, by in rates.items()},
                "transform_rows_per_s": transform, "neighbor_graph": graph, "cpu_copy_max_difference": difference,
                "cpu_copy_device": str(on_cpu.device_)}
    if torch.cuda.is_available() and plain.device_.type == "cuda":
        document["gpu"] = torch.cuda.get_device_name(plain.device_)
    write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
