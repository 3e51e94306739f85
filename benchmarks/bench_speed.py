"""Training and inference speed of CompressionVAE against a plain PyTorch loop and the hardware.

Prints a table and writes JSON:

1. training samples/s at batch sizes 64, 256 and 1024 for the MNIST-sized model
   (784-512-256-2 and mirror, Bernoulli likelihood), with no flow, with 5 IAF steps and
   with ``precision="bfloat16"`` (mixed precision), and with ``compile=True``
   (``torch.compile``) without and with 5 IAF steps, next to a plain hand-written PyTorch
   loop of the same network (no flow, float32, eager);
2. transform, inverse_transform and score_samples samples/s on 100,000 rows, next to the
   plain network's encoder under ``torch.inference_mode``;
3. the model's FLOPs per sample and the machine's measured fp32 matmul rate, so each
   figure is also given as a fraction of the hardware limit.

Usage::

    python benchmarks/bench_speed.py --data ../shared/datasets/mnist.npz --out benchmarks/results/speed_cpu.json

Without ``--data`` it uses random pixels in [0, 1] (speed does not depend on the values).
Targets (issue 4): training >= 0.9x the plain loop at every batch size; 5 IAF steps cost
<= 1.3x the step time of no flow; transform >= 150,000 samples/s on 100k rows of 784
features (CPU); on a GPU, training at batch 1024 >= 50x the CPU's.
"""

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cvae import CompressionVAE

HIDDEN = (512, 256)
N_LATENT = 2
# Steps timed per batch size: a few seconds each on a 2-core CPU.
STEPS = {64: 1500, 256: 600, 1024: 200}
WARMUP_STEPS = 10  # untimed steps before the plain loop's timed run
N_INFERENCE = 100_000
TARGETS = {"train_vs_plain": 0.9, "iaf5_step_time_ratio": 1.3, "transform_samples_per_s": 150_000}


def load_pixels(path, n_rows=N_INFERENCE, seed=0):
    if path is None:
        return np.random.default_rng(seed).random((n_rows, 784), dtype=np.float32)
    with np.load(path) as data:
        X = np.concatenate([data["X_train"], data["X_test"]]).reshape(-1, 784).astype(np.float32) / 255.0
    return np.resize(X, (n_rows, X.shape[1]))  # tile to n_rows


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- hardware and FLOPs


def matmul_gflops(device, size=2048, repeats=10):
    """Measured fp32 matmul rate (GFLOP/s) on square matrices."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def linear_macs(module):
    """Multiply-accumulates of one sample through every Linear layer of ``module``."""
    return sum(m.in_features * m.out_features for m in module.modules() if isinstance(m, nn.Linear))


# ---------------------------------------------------------------- the plain loop


class PlainVAE(nn.Module):
    """The same network as CompressionVAE's, written the obvious way."""

    def __init__(self, n_features=784, hidden=HIDDEN, n_latent=N_LATENT):
        super().__init__()
        sizes = [n_features, *hidden]
        self.encoder = nn.Sequential(*_dense_stack(sizes), nn.Linear(sizes[-1], 2 * n_latent))
        self.decoder = nn.Sequential(*_dense_stack([n_latent, *hidden[::-1]]), nn.Linear(hidden[0], n_features))

    def forward(self, x):
        mu, log_var = self.encoder(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        logits = self.decoder(z)
        reconstruction = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
        return (reconstruction + kl) / len(x)


def _dense_stack(sizes):
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return layers


def plain_training_rate(X, batch_size, n_steps, device):
    torch.manual_seed(0)
    model = PlainVAE(X.shape[1]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.as_tensor(X, device=device)

    def step():
        index = torch.randint(len(data), (batch_size,), device=device)
        optimizer.zero_grad()
        loss = model(data[index])
        loss.backward()
        optimizer.step()

    for _ in range(WARMUP_STEPS):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    synchronize(device)
    return batch_size * n_steps / (time.perf_counter() - start), model


def plain_encode_rate(model, X, device, batch_size=4096):
    data = torch.as_tensor(X)
    with torch.inference_mode():
        model.encoder(data[:batch_size].to(device))
        synchronize(device)
        start = time.perf_counter()
        for i in range(0, len(data), batch_size):
            model.encoder(data[i : i + batch_size].to(device))[:, :N_LATENT].cpu()
        synchronize(device)
    return len(data) / (time.perf_counter() - start)


# ---------------------------------------------------------------- CompressionVAE


def estimator_training_rate(X, batch_size, n_steps, iaf, device, precision="float32", compile=False):
    """Samples/s of the training loop, after warm-up steps, on the trainer's own clock.

    Validations come every ``n_steps / 2`` steps and the fit runs ``1.5 * n_steps``: the
    rate is taken from the first validation (after the warm-up half, which includes
    ``torch.compile``'s compilation) to the last, over ``n_steps`` steps and one
    validation of 512 rows. Also returns the fit's wall seconds.
    """
    interval = max(1, n_steps // 2)
    vae = CompressionVAE(
        n_components=N_LATENT, hidden_layer_sizes=HIDDEN, iaf_flow_length=iaf, batch_size=batch_size,
        max_steps=3 * interval, validation_interval=interval, learning_rate="constant", device=device,
        precision=precision, compile=compile, neighbor_weight=0, random_state=0,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.fit(X[:-512], X_valid=X[-512:])
    wall = time.perf_counter() - start
    first, last = vae.history_[0], vae.history_[-1]
    seconds = last["elapsed_seconds"] - first["elapsed_seconds"]
    return batch_size * (last["step"] - first["step"]) / seconds, vae, wall


def rate(fn, X, repeats=3):
    fn(X[:1000])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(X)
        best = min(best, time.perf_counter() - start)
    return len(X) / best


# ---------------------------------------------------------------- report


def run(args):
    device = torch.device(args.device)
    X = load_pixels(args.data, args.rows)
    X_train = X[:60000]
    peak = matmul_gflops(device)
    result = {
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "matmul_gflops": peak,
        "model": f"784-{'-'.join(map(str, HIDDEN))}-{N_LATENT} and mirror, bernoulli",
        "repeats": args.repeats,
        "training": [],
    }
    plain_model = None
    for batch_size in args.batch_sizes:
        n_steps = max(20, int(STEPS.get(batch_size, 300) * args.scale))
        # Interleaved repeats, best of each: this machine's speed drifts by 10-40% between runs.
        plain = ours = iaf = bf16 = compiled = compiled_iaf = 0.0
        compile_walls = []
        for _ in range(args.repeats):
            rate_plain, plain_model = plain_training_rate(X_train, batch_size, n_steps, device)
            rate_ours, vae, _ = estimator_training_rate(X_train, batch_size, n_steps, 0, device)
            rate_iaf, vae_iaf, _ = estimator_training_rate(X_train, batch_size, n_steps, 5, device)
            rate_bf16, *_ = estimator_training_rate(X_train, batch_size, n_steps, 0, device, "bfloat16")
            plain, ours, iaf = max(plain, rate_plain), max(ours, rate_ours), max(iaf, rate_iaf)
            bf16 = max(bf16, rate_bf16)
            if not args.no_compile:
                rate_c, _, wall_c = estimator_training_rate(X_train, batch_size, n_steps, 0, device, compile=True)
                rate_ci, _, wall_ci = estimator_training_rate(X_train, batch_size, n_steps, 5, device, compile=True)
                compiled, compiled_iaf = max(compiled, rate_c), max(compiled_iaf, rate_ci)
                compile_walls.append([wall_c, wall_ci])
        flops = 6 * linear_macs(vae.module_)  # forward + backward, 2 FLOPs per MAC
        result["training"].append({
            "batch_size": batch_size,
            "steps": n_steps,
            "plain_samples_per_s": plain,
            "cvae_samples_per_s": ours,
            "cvae_iaf5_samples_per_s": iaf,
            "train_vs_plain": ours / plain,
            "iaf5_step_time_ratio": ours / iaf,
            "cvae_bf16_samples_per_s": bf16,
            "bf16_vs_plain": bf16 / plain,
            "cvae_compiled_samples_per_s": compiled or None,
            "cvae_compiled_iaf5_samples_per_s": compiled_iaf or None,
            "compiled_vs_plain": compiled / plain if compiled else None,
            "compiled_iaf5_step_time_ratio": compiled / compiled_iaf if compiled else None,
            "compiled_fit_wall_seconds": compile_walls,
            "train_flops_per_sample": flops,
            "plain_fraction_of_peak": plain * flops / (peak * 1e9),
            "cvae_fraction_of_peak": ours * flops / (peak * 1e9),
        })
    Z = vae.transform(X)
    encode_flops = 2 * (linear_macs(vae.module_.encoder) + linear_macs(vae.module_.posterior))
    inference = {
        "rows": len(X),
        "plain_encode_samples_per_s": plain_encode_rate(plain_model, X, device),
        "transform_samples_per_s": rate(vae.transform, X),
        "inverse_transform_samples_per_s": rate(vae.inverse_transform, Z),
        "score_samples_samples_per_s": rate(vae.score_samples, X, repeats=1),
        "transform_iaf5_samples_per_s": rate(vae_iaf.transform, X),
        "encode_flops_per_sample": encode_flops,
    }
    inference["transform_fraction_of_peak"] = inference["transform_samples_per_s"] * encode_flops / (peak * 1e9)
    result["inference"] = inference
    result["targets"] = {
        "train_vs_plain >= 0.9 at every batch size": all(r["train_vs_plain"] >= 0.9 for r in result["training"]),
        "iaf5 step time <= 1.3x": all(r["iaf5_step_time_ratio"] <= 1.3 for r in result["training"]),
        "iaf5 step time <= 1.3x with compile=True": all(
            (r["compiled_iaf5_step_time_ratio"] or float("inf")) <= 1.3 for r in result["training"]
        ),
        "transform >= 150,000 samples/s on 100k rows": inference["transform_samples_per_s"] >= 150_000
        and len(X) >= N_INFERENCE,
    }
    return result


def print_table(result):
    print(f"device {result['device']}, torch {result['torch']}, {result['threads']} threads, "
          f"fp32 matmul {result['matmul_gflops']:.0f} GFLOP/s; model {result['model']}")
    print(f"{'batch':>6} {'plain/s':>10} {'cvae/s':>10} {'ratio':>6} {'iaf5/s':>10} {'iaf time':>8} "
          f"{'plain %peak':>11} {'cvae %peak':>10} {'bf16/s':>10} {'ratio':>6} "
          f"{'compiled/s':>10} {'ratio':>6} {'c. iaf5/s':>10} {'iaf time':>8}")
    for r in result["training"]:
        compiled = ""
        if r["cvae_compiled_samples_per_s"]:
            compiled = (f" {r['cvae_compiled_samples_per_s']:>10,.0f} {r['compiled_vs_plain']:>6.2f} "
                        f"{r['cvae_compiled_iaf5_samples_per_s']:>10,.0f} {r['compiled_iaf5_step_time_ratio']:>7.2f}x")
        print(f"{r['batch_size']:>6} {r['plain_samples_per_s']:>10,.0f} {r['cvae_samples_per_s']:>10,.0f} "
              f"{r['train_vs_plain']:>6.2f} {r['cvae_iaf5_samples_per_s']:>10,.0f} {r['iaf5_step_time_ratio']:>7.2f}x "
              f"{100 * r['plain_fraction_of_peak']:>10.0f}% {100 * r['cvae_fraction_of_peak']:>9.0f}% "
              f"{r['cvae_bf16_samples_per_s']:>10,.0f} {r['bf16_vs_plain']:>6.2f}{compiled}")
    inf = result["inference"]
    print(f"on {inf['rows']:,} rows (samples/s): plain encoder {inf['plain_encode_samples_per_s']:,.0f}, "
          f"transform {inf['transform_samples_per_s']:,.0f} ({100 * inf['transform_fraction_of_peak']:.0f}% of peak), "
          f"transform with IAF-5 {inf['transform_iaf5_samples_per_s']:,.0f}, "
          f"inverse_transform {inf['inverse_transform_samples_per_s']:,.0f}, "
          f"score_samples {inf['score_samples_samples_per_s']:,.0f}")
    for name, met in result["targets"].items():
        print(f"target {name}: {'met' if met else 'MISSED'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="mnist.npz (default: random pixels)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the timed steps (e.g. 0.1 for a look)")
    parser.add_argument("--rows", type=int, default=N_INFERENCE, help="rows for the inference figures")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats per figure (best is kept)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile=True figures")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    result = run(args)
    print_table(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
