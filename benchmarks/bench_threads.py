"""A fit beside other CPU-bound processes: does it slow by its share of the cores, or collapse?

Fits the demo's model on scikit-learn's digits (75% of the rows, the defaults, or
``--steps`` steps), or with ``--data mnist.npz`` MNIST's default model on 20,000 of its
training rows (``--steps``, default 600), beside 0, 1 and 2 pure-Python busy loops: with
the package's thread rule (``n_jobs=None``: small steps on one thread, larger ones on the
CPUs that other running threads leave free, ``cvae.training.environment.threads_for_step``)
and with all of torch's threads (``n_jobs=torch.get_num_threads()``), and prints seconds and
the slowdown against the same setting alone.

Usage::

    python benchmarks/bench_threads.py --out benchmarks/results/threads.json
    python benchmarks/bench_threads.py --data ../shared/datasets/mnist.npz \
        --out benchmarks/results/threads_mnist.json
"""

import argparse
import multiprocessing
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import machine, write_json  # noqa: E402
from cvae import CompressionVAE  # noqa: E402

MNIST_ROWS = 20_000


def busy():
    while True:
        pass


def fit_seconds(X, steps=None, n_jobs=None):
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        CompressionVAE(random_state=0, n_jobs=n_jobs, **({} if steps is None else {"max_steps": steps})).fit(X)
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mnist.npz: time MNIST's default model instead of digits'")
    parser.add_argument("--steps", type=int, default=None, help="step budget (default: the estimator's; 600 on MNIST)")
    parser.add_argument("--others", type=int, nargs="+", default=[0, 1, 2], help="busy processes beside the fit")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.data:
        X = np.load(args.data)["X_train"][:MNIST_ROWS].astype(np.float32) / 255
        args.steps = args.steps or 600
    else:
        X, y = load_digits(return_X_y=True)
        X = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)[0]
    all_threads = torch.get_num_threads()
    fit_seconds(X, 50)  # warm-up: the first Adam imports torch._dynamo
    rows = []
    for others in args.others:
        workers = [multiprocessing.Process(target=busy, daemon=True) for _ in range(others)]
        for worker in workers:
            worker.start()
        try:
            time.sleep(0.5)
            row = {"other_processes": others}
            for label, n_jobs in (("rule", None), ("all_threads", all_threads)):
                row[label] = fit_seconds(X, args.steps, n_jobs)
            rows.append(row)
        finally:
            for worker in workers:
                worker.terminate()
                worker.join()
        alone = rows[0]
        print(f"{others} other(s): rule {row['rule']:6.2f} s ({row['rule'] / alone['rule']:.1f}x)   "
              f"all {all_threads} threads {row['all_threads']:6.2f} s "
              f"({row['all_threads'] / alone['all_threads']:.1f}x)", flush=True)
    document = {"machine": machine(), "data": "mnist" if args.data else "digits", "steps": args.steps, "rows": rows}
    write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
