"""Integrate batches of counts, decode a cell as another batch, map a new batch, transfer labels.

Counts generated in three batches with known effects (``cvae.datasets.make_batched_counts``):
each batch scales every gene by its own factor, shifts library sizes and holds the cell
types in its own proportions. The example

1. fits two batches with the batch as a covariate and the cell types as labels, and shows
   how far the batches mix (a batch's 10-NN accuracy: 0.5 is chance for two) against the
   fit without covariates;
2. decodes each cell as if measured in the other batch (``inverse_transform(Z,
   covariates=...)``) and compares the ratio of the decoded means with the true factors;
3. maps the third batch with one ``partial_fit`` (every weight trains, the landmarks
   holding the reference, which moves a little: the median distance over the embedding's
   spread; ``freeze_reference=True`` would train the new batch's weights alone and move it
   not at all) and transfers the cell types to it with ``predict``, a vote of the nearest
   labelled reference cells in the embedding (``classifier_weight=1.0`` would train a
   classifier with the model instead, which measured better on real cells).

docs/covariates.md explains each step; benchmarks/README.md, "Covariates", measures them.

    python examples/integrate_batches.py [--cells N] [--max-steps N]
"""

import argparse
import warnings

import numpy as np
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from cvae import CompressionVAE
from cvae.datasets import make_batched_counts


def batch_knn(Z, batch):
    """How often a cell's 10 nearest cells name its batch (lower: better mixed)."""
    return cross_val_score(KNeighborsClassifier(10), Z, batch, cv=3).mean()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=3000)
    parser.add_argument("--max-steps", type=int, default=None, help="the fits' step budget (default: auto)")
    args = parser.parse_args(argv)
    budget = {} if args.max_steps is None else {"max_steps": args.max_steps}
    X, cell_type, batch, _, effects = make_batched_counts(args.cells, 300, n_batches=3, composition=0,
                                                          random_state=0, return_effects=True)
    reference, query = batch < 2, batch == 2
    X_ref, batch_ref, type_ref = X[reference], batch[reference], cell_type[reference]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short fits warn that they stopped at max_steps
        plain = CompressionVAE(likelihood="negative_binomial", random_state=0, **budget).fit_transform(X_ref)
        vae = CompressionVAE(likelihood="negative_binomial", random_state=0, **budget)
        Z = vae.fit_transform(X_ref, type_ref, covariates=batch_ref)
    print(f"1. batch 10-NN accuracy (0.5: mixed): without covariates {batch_knn(plain, batch_ref):.3f}, "
          f"with the batch as a covariate {batch_knn(Z, batch_ref):.3f}")

    as_0, as_1 = (vae.inverse_transform(Z, covariates=[b]) for b in (0, 1))
    expressed = np.asarray(X_ref.sum(axis=0)).ravel() > 0
    decoded = np.log(as_1[:, expressed]) - np.log(as_0[:, expressed])
    decoded = np.median(decoded - decoded.mean(axis=1, keepdims=True), axis=0)
    truth = np.log(effects["factors"][1, expressed] / effects["factors"][0, expressed])
    correlation = np.corrcoef(decoded, truth - truth.mean())[0, 1]
    print(f"2. decoded as batch 1 over as batch 0, per gene, against the true factor ratio: correlation "
          f"{correlation:.3f}")

    encoder_map = vae.set_params(placement="encoder").transform(X_ref, covariates=batch_ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.partial_fit(X[query], covariates=batch[query])  # a new category: batch 2
    after = vae.transform(X_ref, covariates=batch_ref)
    moved = np.median(np.linalg.norm(after - encoder_map, axis=1)) / np.sqrt(encoder_map.var(axis=0).sum())
    vae.set_params(placement="auto")
    accuracy = np.mean(vae.predict(X[query], covariates=batch[query]) == cell_type[query])
    print(f"3. batch 2 mapped: the reference moved {moved:.3f} of its spread; its cell types predicted with accuracy "
          f"{accuracy:.3f} (8 types)")
    return {"plain": batch_knn(plain, batch_ref), "integrated": batch_knn(Z, batch_ref), "correlation": correlation,
            "moved": moved, "accuracy": accuracy}


if __name__ == "__main__":
    main()
