"""A dataset stored as a directory tree of .npy files, as the original CompressionVAE read it.

    python examples/npy_directory.py [--root DIR] [--max-steps N]

Writes scikit-learn's digits as one .npy file per image in a folder per class (what a large
image collection often looks like on disk), then fits on the directory. Files are read in
sorted path order, so the train/validation split is the same on every run. The same from
the shell::

    cvae fit DIR --logdir runs/digits && cvae transform runs/digits DIR -o embedding.npy

The directory is read into memory here (``read_array``); ``fit(DIR)`` itself streams a
directory, a buffer at a time, for a dataset larger than memory (README, "Data on disk").
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from cvae import CompressionVAE
from cvae.files import read_array


def write_dataset(root, X, y):
    """One .npy vector per sample, in a sub-directory per class."""
    for i, (row, label) in enumerate(zip(X, y)):
        folder = Path(root) / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i:05d}.npy", row.astype(np.float32))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="where to write the files (default: a temporary directory)")
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args(argv)

    root = Path(args.root or tempfile.mkdtemp(prefix="cvae-npy-"))
    X, y = load_digits(return_X_y=True)
    write_dataset(root, X, y)
    n_files = sum(1 for _ in root.rglob("*.npy"))
    print(f"wrote {n_files} .npy files under {root}")

    data, _ = read_array(root)
    params = {"random_state": 0}
    if args.max_steps:
        params["max_steps"] = args.max_steps
    vae = CompressionVAE(**params).fit(data)
    Z = vae.transform(read_array(root / "class_3")[0])
    print(f"fitted on {data.shape[0]} x {data.shape[1]} read from the tree; "
          f"embedded the {len(Z)} files of class_3, centred at {np.round(Z.mean(axis=0), 2)}")
    return vae, Z


if __name__ == "__main__":
    main()
