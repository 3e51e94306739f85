"""Serving figures of what a model serves: one-row latency (p50, p99) and rows per second.

A default model of MNIST's shape (784 features, the default hidden layers, 2-D, its
transform the neighbour placement over the 60,000 training rows) is run six ways. The
default transform (the placement): ``transform`` in process, and the exported default
(``export(path)``) in ONNX Runtime, fed ``--placement-batch`` rows a call. The encoder's
map: ``transform`` with ``placement="encoder"``, the torch module eagerly, the module under
``torch.compile``, and the exported encoder (``part="encoder"``) in ONNX Runtime (``export``
extra). Latency is the wall time of one call on one row, over ``--calls`` calls after a
warm-up; throughput is rows per second at 1,000 and 65,536 rows. The model is trained for
``--max-steps`` steps on ``--data`` (MNIST) or on random pixels: its weights do not change
its speed.

Usage::

    python benchmarks/bench_latency.py --out benchmarks/results/latency_cpu.json
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import machine, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402


def timings(call, calls, warmup=20):
    """Seconds of each of ``calls`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        call()
    seconds = np.empty(calls)
    for i in range(calls):
        started = time.perf_counter()
        call()
        seconds[i] = time.perf_counter() - started
    return seconds


def onnx_session(vae, part, threads=None):
    """An ONNX Runtime session of ``vae``'s exported ``part``, on ``threads`` threads (as many
    as torch's by default)."""
    import onnxruntime

    path = vae.export(Path(tempfile.mkdtemp()) / f"{part}.onnx", part=part)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def in_batches(run, batch_size):
    return lambda rows: np.concatenate([run(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)])


def runners(vae, X, placement_batch):
    """name -> function of a float32 array that embeds its rows, each checked against
    ``transform`` under its placement."""
    module = vae.module_

    def eager(rows):
        with torch.inference_mode():
            return module.embed(torch.from_numpy(rows)).numpy()

    compiled_embed = torch.compile(module.embed, dynamic=True)

    def compiled(rows):
        with torch.inference_mode():
            return compiled_embed(torch.from_numpy(rows)).numpy()

    def encoder_transform(rows):
        return vae.set_params(placement="encoder").transform(rows)

    def placement_transform(rows):
        return vae.set_params(placement="auto").transform(rows)

    found = {"placement: transform": placement_transform}
    encoders = {"encoder: transform": encoder_transform, "encoder: eager": eager, "encoder: compiled": compiled}
    try:
        placed = onnx_session(vae, "transform")
        found["placement: onnxruntime"] = in_batches(lambda rows: placed.run(None, {"x": rows})[0], placement_batch)
        alone = onnx_session(vae, "transform", threads=1)  # on one row, a second thread waits more than it helps
        found["placement: onnxruntime, 1 thread"] = in_batches(lambda rows: alone.run(None, {"x": rows})[0],
                                                               placement_batch)
        encoder = onnx_session(vae, "encoder")
        encoders["encoder: onnxruntime"] = lambda rows: encoder.run(None, {"x": rows})[0]
    except ImportError as exc:
        print(f"no ONNX Runtime rows: {exc}")
    for name, run in {**found, **encoders}.items():  # all agree before any is timed
        expected = (placement_transform if name.startswith("placement") else encoder_transform)(X[:100])
        np.testing.assert_allclose(run(X[:100]), expected, atol=1e-4, rtol=1e-4, err_msg=name)
    return {**found, **encoders}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="MNIST as an .npz with X_train (default: random pixels)")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--placement-batch", type=int, default=1024,
                        help="rows per call of the exported placement (its memory grows with batch x training rows)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.data:
        with np.load(args.data) as data:
            X = (data["X_train"] / 255).astype(np.float32)
    else:
        X = np.random.default_rng(0).random((60000, 784), dtype=np.float32)
    vae = CompressionVAE(max_steps=args.max_steps, random_state=0).fit(X)
    big = np.ascontiguousarray(np.resize(X, (65536, X.shape[1])))
    document = {"machine": machine(), "args": vars(args), "results": {}}
    print(f"{'runner':24s} {'p50 ms':>8s} {'p99 ms':>8s} {'rows/s @1k':>12s} {'rows/s @64k':>12s}")
    for name, run in runners(vae, X, args.placement_batch).items():
        one = timings(lambda: run(X[:1]), args.calls) * 1e3
        row = {"p50_ms": float(np.percentile(one, 50)), "p99_ms": float(np.percentile(one, 99))}
        for label, rows, calls, warmup in (("rows_per_second_1k", X[:1000], 50, 20),
                                           ("rows_per_second_64k", big, 3, 1)):
            row[label] = float(len(rows) / np.median(timings(lambda: run(rows), calls, warmup)))
        document["results"][name] = row
        print(f"{name:24s} {row['p50_ms']:8.3f} {row['p99_ms']:8.3f} {row['rows_per_second_1k']:12,.0f} "
              f"{row['rows_per_second_64k']:12,.0f}", flush=True)
        write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
