"""Training on several processes with torchrun: each trains on its shard, one model results.

    torchrun --nproc_per_node=4 examples/train_ddp.py data.npy --logdir run
    python examples/train_ddp.py data.npy --logdir run        # the same, in one process

``fit`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``): every
process builds the same estimator and calls ``fit`` on the same input, each trains on its
own shard of every batch through ``DistributedDataParallel``, and rank 0 alone writes the
log directory. ``batch_size`` is the rows of a whole step, so the same parameters train the
same model on any number of processes. Without a file, scikit-learn's digits are used.
"""

import argparse
import os

import numpy as np

from cvae import CompressionVAE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=None, help=".npy file of rows (default: digits)")
    parser.add_argument("--logdir", required=True)
    parser.add_argument("--max-steps", type=int, default=None)
    args = parser.parse_args(argv)

    if args.data is None:
        from sklearn.datasets import load_digits

        X = (load_digits().data / 16.0).astype(np.float32)
    else:
        X = args.data  # a path: each process streams the rows it needs
    params = {} if args.max_steps is None else {"max_steps": args.max_steps}
    vae = CompressionVAE(logdir=args.logdir, random_state=0, **params).fit(X)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"rank 0 of {os.environ.get('WORLD_SIZE', '1')}: {vae.n_steps_} steps, best validation loss "
              f"{vae.best_validation_loss_:.4g}; saved in {args.logdir}")
    return vae


if __name__ == "__main__":
    main()
