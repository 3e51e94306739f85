"""Labels shape the embedding: digits with a tenth of their labels.

    python examples/semi_supervised.py [--share 0.1] [--target-weight 0.5] [--max-steps N]

``fit(X, y)`` takes class labels, with -1 for the rows that have none (as scikit-learn's
semi-supervised estimators mark them). The labels act through the neighbour graph: a row's
neighbours of another class give way to neighbours of its own, in the proportion
``target_weight``, and unlabelled rows take the class that spreads to them over the
graph where it is clear. The script fits the same rows without labels and with a share of
them, and prints how often a training row's 10 nearest neighbours in the embedding share
its true class, and the 10-NN accuracy of the unseen test rows. Takes a few seconds.
"""

import argparse

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from cvae import CompressionVAE


def neighbour_purity(Z, y, k=10):
    """Share of each row's ``k`` nearest rows in ``Z`` that have its label."""
    neighbours = KNeighborsClassifier(k).fit(Z, y).kneighbors(Z, k + 1, return_distance=False)[:, 1:]
    return float(np.mean(y[neighbours] == y[:, None]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=float, default=0.1, help="share of training rows that keep their label")
    parser.add_argument("--target-weight", type=float, default=0.5, help="how much the labels shape the embedding")
    parser.add_argument("--max-steps", type=int, default=None, help="default: the estimator's")
    args = parser.parse_args(argv)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16, y, test_size=0.25, random_state=0)
    rng = np.random.default_rng(0)
    y_partial = np.where(rng.random(len(y_train)) < args.share, y_train, -1)  # -1: no label
    settings = {} if args.max_steps is None else {"max_steps": args.max_steps}

    results = {}
    for name, labels in (("no labels", None), (f"{args.share:.0%} of labels", y_partial)):
        vae = CompressionVAE(target_weight=args.target_weight, random_state=0, **settings).fit(X_train, labels)
        accuracy = KNeighborsClassifier(10).fit(vae.embedding_, y_train).score(vae.transform(X_test), y_test)
        results[name] = (neighbour_purity(vae.embedding_, y_train), accuracy)
        print(f"{name:>15}: training rows' neighbours of their class {results[name][0]:.3f}, "
              f"test 10-NN accuracy {accuracy:.3f}")
    print(f"classes seen: {vae.classes_.tolist()}")
    return results


if __name__ == "__main__":
    main()
