"""Where a default fit's time goes (issue 52, item 1), beside what the CPU can multiply.

Fits ``CompressionVAE(random_state=0)`` (the defaults) on each dataset and times its parts
by wrapping the functions that do them: reading and statistics (``prepare``), the graph
searches (training and validation graphs), the training steps split into forward (with
the noise draw and the gradients zeroed), backward and the optimizer, fetching batches
(the rest of the loop), validation, and what the run stores at its end (landmarks, the
sample of rows, the placement's reference). A step's FLOPs are counted by
``torch.utils.flop_counter`` on one training step of the fitted model at the fit's batch
(forward and backward, the neighbour rows' encoder pass included), and this CPU's matmul
rate is measured at the fit's precision and threads, on the shape of the model's widest
layer at that batch (``batch x in`` by ``in x out``) and on 2048 x 2048 squares. The
steps' share of that rate says how far from the hardware's limit they run.

Usage::

    python benchmarks/bench_profile.py --data ../shared/datasets/mnist.npz \\
        --datasets digits mnist-5k mnist-20k mnist-60k --out benchmarks/results/profile_cpu.json
"""

import argparse
import sys
import time
import warnings
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_time_to_quality import load_dataset, machine, write_json  # noqa: E402

import cvae.data.graph  # noqa: E402
import cvae.training.lifecycle  # noqa: E402
import cvae.training.run  # noqa: E402
from cvae import CompressionVAE  # noqa: E402
from cvae.nn.vae import LossSettings  # noqa: E402
from cvae.training.trainer import PRECISIONS, Trainer  # noqa: E402

PARTS = ("prepare", "graph", "forward", "backward", "optimizer", "batches", "validation", "stored")


def timed(seconds, key, function):
    """``function``, adding its wall time to ``seconds[key]``."""
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - started
    return wrapper


def profiled_fit(X):
    """The default fit of ``X`` and the seconds of each of its parts (``PARTS``; ``steps``
    is forward, backward and the optimizer together, ``loop`` the training loop)."""
    seconds = defaultdict(float)
    step, backward, adam_step = Trainer._train_step, torch.Tensor.backward, torch.optim.Adam.step
    patches = [
        mock.patch.object(cvae.training.lifecycle, "prepare",
                          timed(seconds, "prepare", cvae.training.lifecycle.prepare)),
        mock.patch.object(cvae.data.graph, "rows_graph", timed(seconds, "graph", cvae.data.graph.rows_graph)),
        mock.patch.object(Trainer, "_train_step", timed(seconds, "steps", step)),
        mock.patch.object(torch.Tensor, "backward", timed(seconds, "backward", backward)),
        mock.patch.object(torch.optim.Adam, "step", timed(seconds, "optimizer", adam_step)),
        mock.patch.object(Trainer, "_validate", timed(seconds, "validation", Trainer._validate)),
        mock.patch.object(Trainer, "_loop", timed(seconds, "loop", Trainer._loop)),
    ]
    keep = cvae.training.run.run_training.__defaults__  # fit_keeps, the default keep
    with ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for patch in patches:
            stack.enter_context(patch)
        defaults = list(keep)
        defaults[2] = timed(seconds, "stored", keep[2])
        stack.enter_context(mock.patch.object(cvae.training.run.run_training, "__defaults__", tuple(defaults)))
        started = time.perf_counter()
        vae = CompressionVAE(random_state=0).fit(X)
        seconds["total"] = time.perf_counter() - started
    # the validation inside the loop is not batches; the steps' parts less their sum is forward
    seconds["forward"] = seconds["steps"] - seconds["backward"] - seconds["optimizer"]
    seconds["batches"] = seconds["loop"] - seconds["steps"] - seconds["validation"]
    seconds["other"] = seconds["total"] - sum(seconds[p] for p in PARTS)
    return vae, dict(seconds)


def step_flops(vae, X):
    """FLOPs of one training step of ``vae``'s module at its batch, forward and backward."""
    from torch.utils.flop_counter import FlopCounterMode

    model = vae.module_.train()
    batch = min(vae.batch_size, len(X))
    rows = torch.from_numpy(np.asarray(X[:batch], dtype=np.float32))
    neighbors = rows.flip(0) if vae.neighbor_weight_ > 0 else None
    loss = LossSettings(neighbor_weight=float(vae.neighbor_weight_) * X.shape[1])
    eps = torch.randn(batch, model.n_latent)
    counter = FlopCounterMode(display=False)
    with counter:
        model(rows, loss, eps=eps, neighbors=neighbors).loss.backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    return counter.get_total_flops()


def matmul_rate(m, k, n, dtype, repeats=50):
    """GFLOP/s of ``(m x k) @ (k x n)`` in ``dtype`` on this process's threads (best of 3)."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(5):
        a @ b
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - started) / repeats)
    return 2 * m * k * n / best / 1e9


def widest_layer(module):
    """``(in, out)`` of the linear layer with the most weights."""
    shapes = [p.shape for name, p in module.named_parameters() if p.dim() == 2]
    out, inp = max(shapes, key=lambda s: s[0] * s[1])
    return inp, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="mnist.npz, for the MNIST sizes")
    parser.add_argument("--datasets", nargs="+", default=["digits"])
    parser.add_argument("--square", type=int, default=2048, help="side of the square matmul timed beside the layers")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    rows = []
    header = (f"{'data':<10} {'total s':>7} " + " ".join(f"{p:>10}" for p in PARTS) + f" {'other':>6} {'steps':>6} "
              f"{'ms/step':>7} {'GFLOP/step':>10} {'GFLOP/s':>7} {'matmul':>7} {'share':>5}")
    print(header)
    for name in args.datasets:
        X_train = load_dataset(name, args.data)[0]
        X_train = np.asarray(X_train, dtype=np.float32)
        vae, seconds = profiled_fit(X_train)
        flops = step_flops(vae, X_train)
        dtype = PRECISIONS[vae.precision_] or torch.float32
        torch.set_num_threads(vae.n_threads_)
        inp, out = widest_layer(vae.module_)
        layer_rate = matmul_rate(vae.batch_size, inp, out, dtype)
        square_rate = matmul_rate(args.square, args.square, args.square, dtype, repeats=5)
        compute = seconds["forward"] + seconds["backward"]
        achieved = flops * vae.n_steps_ / compute / 1e9
        row = {"data": name, "rows": len(X_train), "features": X_train.shape[1], "steps": vae.n_steps_,
               "precision": vae.precision_, "threads": vae.n_threads_, "batch_size": vae.batch_size,
               "seconds": seconds, "ms_per_step": 1e3 * seconds["steps"] / vae.n_steps_,
               "step_gflop": flops / 1e9, "achieved_gflops": achieved,
               "matmul_gflops_widest_layer": layer_rate, "matmul_gflops_square": square_rate, "square": args.square,
               "widest_layer": [vae.batch_size, inp, out], "share_of_layer_rate": achieved / layer_rate}
        rows.append(row)
        print(f"{name:<10} {seconds['total']:>7.1f} " + " ".join(f"{seconds[p]:>10.2f}" for p in PARTS) +
              f" {seconds['other']:>6.2f} {vae.n_steps_:>6} {row['ms_per_step']:>7.2f} {flops / 1e9:>10.3f} "
              f"{achieved:>7.1f} {layer_rate:>7.1f} {achieved / layer_rate:>5.2f}", flush=True)
    write_json(args.out, {"machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()
