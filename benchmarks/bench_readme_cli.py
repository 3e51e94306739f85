"""The README's command-line MNIST example, run as written, scored like the headline.

Runs ``cvae fit mnist.npz --key X_train --logdir DIR`` (the README's line; ``--seed`` is
added when given), then ``cvae transform`` of the training and test images, and scores the
test embedding as the headline does: 10-NN accuracy (a classifier fitted on the training
rows' embedding) and trustworthiness(10) of the test rows. ``mnist.npz`` is
``benchmarks/get_mnist.py``'s file (8-bit pixels, as OpenML gives them).

Usage::

    python benchmarks/bench_readme_cli.py --data ../shared/datasets/mnist.npz \\
        --out benchmarks/results/readme_cli_mnist.json
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.manifold import trustworthiness
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).parent))
from bench_time_to_quality import machine, write_json  # noqa: E402


def cvae(*args, cwd):
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cvae", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cvae {' '.join(map(str, args))} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, done.stderr


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="mnist.npz from benchmarks/get_mnist.py")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    data = Path(args.data).resolve()
    with tempfile.TemporaryDirectory() as work:
        fit = ["fit", data, "--key", "X_train", "--logdir", "runs/mnist"]
        fit += [] if args.seed is None else ["--seed", args.seed]
        fit_seconds, messages = cvae(*fit, cwd=work)
        for key in ("X_train", "X_test"):
            cvae("transform", "runs/mnist", data, "--key", key, "-o", f"{key}.npy", cwd=work)
        Z_train, Z_test = (np.load(Path(work) / f"{key}.npy") for key in ("X_train", "X_test"))
    with np.load(data) as mnist:
        X_test, y_train, y_test = mnist["X_test"], mnist["y_train"], mnist["y_test"]
    X_test = X_test.reshape(len(X_test), -1)
    result = {
        "machine": machine(), "command": "cvae " + " ".join(str(a) for a in fit[:1] + ["mnist.npz"] + fit[2:]),
        "fit_seconds": fit_seconds, "fit_messages": messages.strip().splitlines(),
        "test_knn10": float(KNeighborsClassifier(10).fit(Z_train, y_train).score(Z_test, y_test)),
        "test_trustworthiness10": float(trustworthiness(X_test.astype(np.float32) / 255, Z_test, n_neighbors=10)),
    }
    print(f"{result['command']}: fit {fit_seconds:.1f} s, test 10-NN {result['test_knn10']:.3f}, "
          f"trustworthiness(10) {result['test_trustworthiness10']:.3f}")
    for line in result["fit_messages"]:
        print("  " + line)
    write_json(args.out, result)


if __name__ == "__main__":
    main()
