"""What a fitted model file holds, and how large it grows (issue 49, item 18).

Fits each dataset with the neighbour term (the default) and without (``neighbor_weight=0``),
each with ``store_rows=True`` (the default) and ``False``, and reports the sizes of the
pickled estimator, of ``checkpoint.pt`` in its log directory and of the weights alone
(parameters as float32), and the bytes each stored part takes (reservoir, landmarks,
reference). Sizes do not depend on how long a fit trains, so each fit takes ``--steps``
steps. Datasets: scikit-learn's digits; with ``--data mnist.npz``, MNIST's first 5,000 and
all 60,000 training rows (scaled to [0, 1]).

Usage::

    python benchmarks/bench_model_size.py --data ../shared/datasets/mnist.npz \\
        --out benchmarks/results/model_size.json
"""

import argparse
import pickle
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_time_to_quality import machine, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402
from cvae.training import LogDir  # noqa: E402

PARTS = ("reservoir", "landmarks", "reference")


def part_bytes(value):
    """Bytes of the tensors and arrays inside a stored part (a dict of them)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, dict):
        return sum(part_bytes(v) for v in value.values())
    return 0


def measure(name, X, params, steps):
    with tempfile.TemporaryDirectory() as logdir, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = CompressionVAE(max_steps=steps, random_state=0, logdir=logdir, **params).fit(X)
        checkpoint = LogDir(logdir).file(LogDir.CHECKPOINT).stat().st_size
    weights = sum(p.numel() * 4 for p in vae.module_.parameters())
    row = {"data": name, "rows": len(X), "features": X.shape[1], **params,
           "pickle_mb": len(pickle.dumps(vae)) / 1e6, "checkpoint_mb": checkpoint / 1e6, "weights_mb": weights / 1e6}
    row.update({f"{part}_mb": part_bytes(vae._checkpoint.get(part)) / 1e6 for part in PARTS})
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="mnist.npz (X_train, y_train, X_test, y_test)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    from sklearn.datasets import load_digits

    datasets = [("digits", load_digits().data.astype(np.float32))]
    if args.data:
        X = np.load(args.data)["X_train"]
        X = X.reshape(len(X), -1).astype(np.float32) / 255
        datasets += [("mnist-5k", X[:5000]), ("mnist-60k", X)]
    rows = []
    print(f"{'data':<10} {'neighbour':>9} {'store_rows':>10} {'pickle MB':>9} {'checkpoint MB':>13} {'weights MB':>10} "
          f"{'reservoir':>9} {'landmarks':>9} {'reference':>9}")
    for name, X in datasets:
        for weight in ("auto", 0):
            for store in (True, False):
                row = measure(name, X, dict(neighbor_weight=weight, store_rows=store), args.steps)
                rows.append(row)
                print(f"{name:<10} {str(weight):>9} {str(store):>10} {row['pickle_mb']:>9.2f} "
                      f"{row['checkpoint_mb']:>13.2f} {row['weights_mb']:>10.2f} " +
                      " ".join(f"{row[f'{part}_mb']:>9.2f}" for part in PARTS), flush=True)
    write_json(args.out, {"machine": machine(), "steps": args.steps, "runs": rows})


if __name__ == "__main__":
    main()
