"""Quickstart: embed scikit-learn's digits, decode, generate, save and reload.

    python examples/quickstart.py [--max-steps N] [--logdir DIR]
"""

import argparse
import tempfile

import numpy as np
from sklearn.datasets import load_digits

from cvae import CompressionVAE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--logdir", default=None, help="default: a temporary directory")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    logdir = args.logdir or tempfile.mkdtemp(prefix="cvae-quickstart-")
    params = {"n_components": 2, "logdir": logdir, "random_state": 0}
    if args.max_steps:
        params["max_steps"] = args.max_steps

    vae = CompressionVAE(**params).fit(X)
    Z = vae.transform(X)
    print(f"embedding {Z.shape}, fitted in {vae.n_steps_} steps ({vae.stop_reason_})")
    print(f"mean ELBO: {vae.score(X):.1f} nats per image")

    recon = vae.inverse_transform(Z)
    print(f"reconstruction MSE: {np.mean((recon - X) ** 2):.2f} (pixel values 0..16)")
    print(f"generated {len(vae.sample(5, random_state=0))} new digits")

    reloaded = CompressionVAE.load(logdir)
    assert np.array_equal(reloaded.transform(X), Z)
    print(f"reloaded from {logdir}: identical embedding")
    return vae


if __name__ == "__main__":
    main()
