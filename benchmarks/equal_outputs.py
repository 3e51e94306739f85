"""Write what digits' seeded fits give, to check that a change leaves models bit for bit.

Fits ``CompressionVAE(random_state=0)`` on digits' first 1,500 rows with the defaults and
with ``neighbor_weight=0``, and writes ``transform`` of the other rows and of 50 training
rows, ``score_samples``, ``transform`` after a ``partial_fit``, and a model built by two
``partial_fit`` calls alone, to one ``.npz``. Run it on two commits (a git worktree each,
on ``PYTHONPATH``) and compare with ``--compare``::

    PYTHONPATH=/tmp/before python benchmarks/equal_outputs.py before.npz
    python benchmarks/equal_outputs.py after.npz --compare before.npz
"""

import argparse
import warnings

import numpy as np
from sklearn.datasets import load_digits

from cvae import CompressionVAE


def outputs():
    X = load_digits().data.astype(np.float32)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, params in {"defaults": {}, "plain": {"neighbor_weight": 0}}.items():
            vae = CompressionVAE(random_state=0, **params).fit(X[:1500])
            out[f"{name}_transform"] = vae.transform(X[1500:])
            out[f"{name}_training_rows"] = vae.transform(X[:50])
            out[f"{name}_score_samples"] = vae.score_samples(X[1500:])
            vae.partial_fit(X[1500:1700])
            out[f"{name}_after_partial_fit"] = vae.transform(X[1700:])
        alone = CompressionVAE(random_state=0, max_steps=200).partial_fit(X[:800]).partial_fit(X[800:1600])
        out["partial_fit_alone"] = alone.transform(X[1600:])
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the .npz to write")
    parser.add_argument("--compare", help="an .npz of another commit: print which outputs differ")
    args = parser.parse_args(argv)
    out = outputs()
    np.savez(args.out, **out)
    if args.compare:
        with np.load(args.compare) as other:
            same = {key: bool(np.array_equal(out[key], other[key])) for key in out}
        for key, equal in same.items():
            print(f"{key:<28} {'bit-identical' if equal else 'DIFFERS'}")
        return same
    return None


if __name__ == "__main__":
    main()
