"""Add new classes to a fitted embedding with partial_fit, keeping the earlier rows in place.

Fit on scikit-learn's digits 0-4, then update with the 5-9s over several passes of
``partial_fit``, each earlier row held near where the fit put it (``landmark_weight``).
With ``--loose-passes k`` the first ``k`` passes run at a small landmark weight: the
earlier layout moves and makes room for the new classes, and the later passes at the
full weight bring it back. Prints how far the earlier rows moved (median, over the
spread of their embedding) and the 10-NN accuracy of the test rows of all classes.
benchmarks/README.md, "partial_fit", measures the same on MNIST.

    python examples/add_classes.py [--passes N] [--loose-passes K] [--neighbor-weight W] [--max-steps N]
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from cvae import CompressionVAE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=20, help="partial_fit calls over the new classes")
    parser.add_argument("--loose-passes", type=int, default=6, help="of which at landmark_weight=0.01")
    parser.add_argument("--neighbor-weight", default="auto", help="for the updates (auto: the fit's)")
    parser.add_argument("--max-steps", type=int, default=None, help="the fit's step budget (default: auto)")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split((X / 16).astype(np.float32), y, test_size=0.25, random_state=0)
    old = y_train < 5

    params = {"random_state": 0}
    if args.max_steps:
        params["max_steps"] = args.max_steps
    vae = CompressionVAE(**params).fit(X_train[old])
    before = vae.set_params(placement="encoder").transform(X_train[old])

    weight = args.neighbor_weight if args.neighbor_weight == "auto" else float(args.neighbor_weight)
    # under placement="auto" each update embeds its sample of rows anew to place unseen rows by;
    # under "encoder" it keeps none, and transform falls back to the encoder
    vae.set_params(placement="auto", neighbor_weight=weight)
    for number in range(args.passes):
        vae.set_params(landmark_weight=0.01 if number < args.loose_passes else 1.0)
        vae.partial_fit(X_train[~old])

    after = vae.set_params(placement="encoder").transform(X_train[old])
    moved = float(np.median(np.linalg.norm(after - before, axis=1)) / np.linalg.norm(before.std(axis=0)))
    vae.set_params(placement="auto")
    knn = KNeighborsClassifier(10).fit(vae.transform(X_train), y_train).score(vae.transform(X_test), y_test)
    print(f"the 0-4s moved {moved:.3f} of their spread; 10-NN accuracy of all test digits: {knn:.3f}")
    return vae, moved, knn


if __name__ == "__main__":
    main()
