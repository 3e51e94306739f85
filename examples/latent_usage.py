"""Likelihoods and latent usage: the ELBO, importance-weighted bounds, free bits, active units.

    python examples/latent_usage.py [--max-steps 3000]

Fits a 16-dimensional VAE to scikit-learn's digits (pixels scaled to [0, 1], so the
Bernoulli likelihood is chosen) with and without ``free_bits``, and prints for the
unseen test digits the ELBO, the importance-weighted bounds on log p(x) with 10 and 100
samples (in expectation each is at least as tight as the one before; when the posterior
fits well they agree to within their sampling noise), and how many latent dimensions
the encoder uses (:func:`cvae.metrics.active_units`). A 16-D latent space is more than
these images need: without free bits most dimensions collapse onto the prior (3 of 16
stay active at 3,000 steps), with ``free_bits=0.5`` all 16 do, at the price of a lower
ELBO (-27.2 against -24.9 nats).
Takes about a minute on a 2-core CPU.
"""

import argparse
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from cvae import CompressionVAE
from cvae.metrics import active_units

N_COMPONENTS = 16


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=3000)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    X, _ = load_digits(return_X_y=True)
    X_train, X_test = train_test_split(X / 16.0, test_size=0.25, random_state=0)

    print(f"{'free bits':>9} {'ELBO':>8} {'IWAE-10':>8} {'IWAE-100':>9} {'active units':>13}")
    rows = {}
    for free_bits in (0.0, 0.5):
        vae = CompressionVAE(n_components=N_COMPONENTS, free_bits=free_bits, max_steps=args.max_steps, random_state=0)
        vae.fit(X_train)
        row = {
            "elbo": vae.score(X_test),
            "iwae_10": vae.score_samples(X_test, n_importance_samples=10).mean(),
            "iwae_100": vae.score_samples(X_test, n_importance_samples=100).mean(),
            "active_units": active_units(vae.transform(X_test)),
        }
        print(f"{free_bits:>9} {row['elbo']:>8.2f} {row['iwae_10']:>8.2f} {row['iwae_100']:>9.2f} "
              f"{row['active_units']:>10} / {N_COMPONENTS}")
        rows[free_bits] = row
    return rows


if __name__ == "__main__":
    main()
