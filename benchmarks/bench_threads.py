"""A fit beside other CPU-bound processes: does it slow by its share of the cores, or collapse?

Fits the demo's model on scikit-learn's digits (75% of the rows, the defaults, or
``--steps`` steps), or with ``--data mnist.npz`` MNIST's default model on 20,000 of its
training rows (``--steps``, default 600), beside 0, 1 and 2 pure-Python busy loops: with
the package's thread rule (``n_jobs=None``: small steps on one thread, larger ones on the
CPUs that other running threads leave free, ``cvae.training.environment.threads_for_step``)
and with all of torch's threads (``n_jobs=torch.get_num_threads()``), and prints seconds and
the slowdown against the same setting alone. With ``--concurrent N`` it then also starts N
fits at once in N processes, as ``GridSearchCV(n_jobs=N)`` does, with each setting in turn
(``--rounds`` times), and reports each round's wall seconds.

Usage::

    python benchmarks/bench_threads.py --out benchmarks/results/threads.json
    python benchmarks/bench_threads.py --data ../shared/datasets/mnist.npz --concurrent 2 \\
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


def _fit_in_process(X, steps, n_jobs, results):
    results.put(fit_seconds(X, steps, n_jobs))


def concurrent_seconds(X, steps, n_jobs, n_fits):
    """Wall seconds of ``n_fits`` fits started at once, each in its own process, and each
    fit's own seconds."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    fits = [context.Process(target=_fit_in_process, args=(X, steps, n_jobs, results)) for _ in range(n_fits)]
    started = time.perf_counter()
    for fit in fits:
        fit.start()
    seconds = [results.get() for _ in fits]
    for fit in fits:
        fit.join()
    return time.perf_counter() - started, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=None, help="mnist.npz: time MNIST's default model instead of digits'")
    parser.add_argument("--steps", type=int, default=None, help="step budget (default: the estimator's; 600 on MNIST)")
    parser.add_argument("--others", type=int, nargs="+", default=[0, 1, 2], help="busy processes beside the fit")
    parser.add_argument("--concurrent", type=int, default=0, help="also time this many fits started at once")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --concurrent fits per setting")
    parser.add_argument("--settings", nargs="+", choices=["rule", "all_threads"], default=["rule", "all_threads"],
                        help="thread settings timed")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.data:
        X = np.load(args.data)["X_train"][:MNIST_ROWS].astype(np.float32) / 255
        args.steps = args.steps or 600
    else:
        X, y = load_digits(return_X_y=True)
        X = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)[0]
    all_threads = torch.get_num_threads()
    settings = [(label, n_jobs) for label, n_jobs in (("rule", None), ("all_threads", all_threads))
                if label in args.settings]  # label and n_jobs
    fit_seconds(X, min(50, args.steps or 50))  # warm-up: the first Adam imports torch._dynamo
    rows = []
    for others in args.others:
        workers = [multiprocessing.Process(target=busy, daemon=True) for _ in range(others)]
        for worker in workers:
            worker.start()
        try:
            time.sleep(0.5)
            row = {"other_processes": others}
            for label, n_jobs in settings:
                row[label] = fit_seconds(X, args.steps, n_jobs)
            rows.append(row)
        finally:
            for worker in workers:
                worker.terminate()
                worker.join()
        alone = rows[0]
        timings = [f"{label} {row[label]:6.2f} s ({row[label] / alone[label]:.1f}x)" for label, _ in settings]
        print(f"{others} other(s): " + "   ".join(timings), flush=True)
    concurrent = []
    for _ in range(args.rounds if args.concurrent else 0):
        for label, n_jobs in settings:
            wall, seconds = concurrent_seconds(X, args.steps, n_jobs, args.concurrent)
            concurrent.append({"setting": label, "wall_seconds": wall, "fit_seconds": seconds})
            print(f"{args.concurrent} fits at once, {label}: {wall:6.2f} s (one alone {rows[0][label]:.2f} s)",
                  flush=True)
    document = {"machine": machine(), "data": "mnist" if args.data else "digits", "steps": args.steps, "rows": rows,
                "concurrent_fits": args.concurrent, "concurrent": concurrent}
    write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
