"""MNIST: a 2-D embedding of unseen digits and the latent grid, from an .npz file.

    python examples/mnist_embedding.py --data mnist.npz [--max-steps N] [--out-dir .]

The .npz holds ``X_train``, ``y_train``, ``X_test``, ``y_test`` with images flattened to
rows (uint8 or float); ``python benchmarks/get_mnist.py mnist.npz`` writes one from
OpenML (internet needed).

The estimator's default budget (``max_steps="auto"``, 3,276 steps for MNIST's 54,000
training rows) reaches the headline's quality (benchmarks/README.md, "Time to quality");
``--max-steps`` sets another. The run prints its own time.
"""

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from cvae import CompressionVAE
from cvae.plotting import plot_embedding, plot_latent_grid


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help=".npz with X_train, y_train, X_test, y_test")
    parser.add_argument("--max-steps", type=int, default=None, help="step budget (default: the estimator's)")
    parser.add_argument("--out-dir", default=".", help="where to write the PNG files")
    args = parser.parse_args(argv)

    with np.load(args.data) as data:
        X_train, y_train = data["X_train"] / 255.0, data["y_train"]
        X_test, y_test = data["X_test"] / 255.0, data["y_test"]
    side = round(X_train.shape[1] ** 0.5)

    budget = {} if args.max_steps is None else {"max_steps": args.max_steps}
    vae = CompressionVAE(n_components=2, random_state=0, verbose=True, **budget)
    start = time.perf_counter()
    vae.fit(X_train)
    print(f"fitted {len(X_train)} images in {time.perf_counter() - start:.0f} s ({vae.n_steps_} steps, "
          f"{vae.likelihood_} likelihood)")

    Z_train, Z_test = vae.transform(X_train), vae.transform(X_test)
    knn = KNeighborsClassifier(n_neighbors=10).fit(Z_train, y_train).score(Z_test, y_test)
    print(f"10-NN accuracy of the unseen test digits in 2-D: {knn:.3f}")
    print(f"test ELBO: {vae.score(X_test):.1f} nats per image")

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_embedding(Z_test, labels=y_test, filename=out / "mnist_embedding.png", title="MNIST test set")
    plot_latent_grid(vae, (side, side), grid_size=20, X=X_test, filename=out / "mnist_latent_grid.png")
    print(f"wrote {out / 'mnist_embedding.png'} and {out / 'mnist_latent_grid.png'}")
    return vae, knn


if __name__ == "__main__":
    main()
