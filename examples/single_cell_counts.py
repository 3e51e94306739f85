"""Single-cell counts: an AnnData of raw counts in, a 2-D embedding in ``.obsm`` out.

The counts are generated (:func:`cvae.datasets.make_counts`: cell types, library sizes,
negative-binomial noise) so that recovery can be measured; with real data, read an
``.h5ad`` file with ``anndata.read_h5ad`` (or pass its path, which is streamed from disk).

    python examples/single_cell_counts.py [--cells N] [--genes N] [--max-steps N]
"""

import argparse

import numpy as np
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from cvae import CompressionVAE
from cvae.datasets import make_counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=5000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--max-steps", type=int, default=3000)
    args = parser.parse_args(argv)

    counts, cell_type, _ = make_counts(args.cells, args.genes, n_clusters=8, random_state=0)
    try:
        import anndata
    except ImportError:  # pip install anndata
        anndata = None
    if anndata is not None:
        data = anndata.AnnData(X=counts.log1p(), layers={"counts": counts})  # X: log1p, as scanpy keeps it
    else:
        data = counts
    vae = CompressionVAE(likelihood="negative_binomial", layer="counts", max_steps=args.max_steps,
                         validation_interval=250, n_iter_no_change=4, random_state=0)
    embedding = vae.fit_transform(data)
    if anndata is not None:
        data.obsm["X_cvae"] = embedding  # where scanpy's plotting looks for embeddings
    found = KMeans(8, n_init=10, random_state=0).fit_predict(embedding)
    ari = adjusted_rand_score(cell_type, found)
    print(f"{args.cells} cells x {args.genes} genes ({100 * counts.nnz / np.prod(counts.shape):.1f}% non-zero), "
          f"{vae.n_steps_} steps: adjusted Rand index of k-means on the embedding {ari:.2f}")
    expected = vae.inverse_transform(embedding[:1], library_size=10_000)
    print(f"expected counts per 10,000 of the first cell's 3 most expressed genes: "
          f"{np.sort(expected[0])[::-1][:3].round(1)}")
    return vae, ari


if __name__ == "__main__":
    main()
