"""What an exported model serves, beside what ``transform`` gives, on one fitted model per dataset.

For each dataset (``bench_time_to_quality.DATASETS``) the defaults are fitted once; the test
rows are embedded by ``transform`` (the neighbour placement) and by the exported default
transform (``export(path)``, ONNX in ONNX Runtime, ``--batch-size`` rows per call), and by the
exported encoder (``part="encoder"``) for reference. Each is scored by test 10-NN accuracy and
trustworthiness(10) (as in ``bench_time_to_quality.py``); the agreement is the largest
distance between the exported and the in-process embedding of a row, over the embedding's
spread (the norm of its per-axis standard deviations). Also: seconds to export, file sizes.

Usage::

    python benchmarks/bench_export.py --data mnist.npz --datasets digits mnist-5k mnist-20k mnist \\
        --out benchmarks/results/export.json
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import DATASETS, dense, load_dataset, machine, score, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402


def serve(path, X, batch_size):
    """``X`` embedded by the ONNX file at ``path`` in ONNX Runtime, ``batch_size`` rows a call."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    X = np.ascontiguousarray(dense(X), dtype=np.float32)
    return np.concatenate([session.run(None, {"x": X[i : i + batch_size]})[0]
                           for i in range(0, len(X), batch_size)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mnist.npz, for the MNIST datasets")
    parser.add_argument("--datasets", nargs="+", default=["digits"], choices=DATASETS)
    parser.add_argument("--max-steps", type=int, default=None, help="cap on the fit's steps (default: auto)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--parts", nargs="+", default=["transform", "encoder"], choices=["transform", "encoder"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    results = {}
    folder = Path(tempfile.mkdtemp())
    print(f"{'data':9s} {'map':18s} {'10-NN':>6s} {'trust':>6s} {'max diff/spread':>16s} {'export s':>9s} {'MB':>6s}")
    for name in args.datasets:
        X_train, X_test, y_train, y_test = load_dataset(name, args.data, args.seed)
        params = {} if args.max_steps is None else {"max_steps": args.max_steps}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vae = CompressionVAE(random_state=args.seed, **params).fit(X_train)
        Z_train, Z_test = vae.transform(X_train), vae.transform(X_test)
        spread = float(np.linalg.norm(Z_test.std(axis=0)))
        rows = {"transform": score(Z_train, Z_test, X_test, y_train, y_test)}
        for part in args.parts:
            started = time.perf_counter()
            path = vae.export(folder / f"{name}-{part}.onnx", part=part)
            seconds = time.perf_counter() - started
            served_train, served_test = serve(path, X_train, args.batch_size), serve(path, X_test, args.batch_size)
            row = score(served_train, served_test, X_test, y_train, y_test)
            row.update(export_seconds=seconds, megabytes=path.stat().st_size / 2**20,
                       max_difference_over_spread=float(np.linalg.norm(served_test - Z_test, axis=1).max() / spread))
            rows[f"exported {part}"] = row
        results[name] = rows
        for label, row in rows.items():
            extra = ("" if "export_seconds" not in row else
                     f" {row['max_difference_over_spread']:16.2e} {row['export_seconds']:9.1f} {row['megabytes']:6.1f}")
            print(f"{name:9s} {label:18s} {row['knn']:6.3f} {row['trustworthiness']:6.3f}{extra}", flush=True)
        write_json(args.out, {"machine": machine(), "args": vars(args), "results": results})
    return results


if __name__ == "__main__":
    main()
