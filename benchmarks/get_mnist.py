"""Write MNIST as the ``.npz`` the benchmarks read (``--data``), from OpenML (needs internet).

    python benchmarks/get_mnist.py mnist.npz

The file holds ``X_train`` (60000 x 784 uint8), ``y_train``, ``X_test`` (10000 x 784) and
``y_test``: OpenML's ``mnist_784`` keeps the original order, training images first.
"""

import argparse

import numpy as np

N_TRAIN = 60000


def save_mnist(X, y, path):
    """Split OpenML's 70,000 rows into MNIST's training and test sets and save them."""
    X = np.asarray(X, dtype=np.uint8)
    y = np.asarray(y).astype(np.int64)
    np.savez_compressed(path, X_train=X[:N_TRAIN], y_train=y[:N_TRAIN], X_test=X[N_TRAIN:], y_test=y[N_TRAIN:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the .npz to write")
    args = parser.parse_args(argv)
    from sklearn.datasets import fetch_openml

    X, y = fetch_openml("mnist_784", version=1, return_X_y=True, as_frame=False)
    save_mnist(X, y, args.out)
    print(f"wrote {args.out}: {N_TRAIN} training and {len(X) - N_TRAIN} test images")


if __name__ == "__main__":
    main()
