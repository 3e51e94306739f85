"""Batch integration (issue 51): embeddings of counts measured in batches, scored as scIB does.

Generated counts in batches with known effects (:func:`cvae.datasets.make_batched_counts`:
per-batch per-feature factors, library-size shifts, batch-dependent cluster proportions).
Methods side by side, each timed:

- PCA of log-normalized counts (``log1p`` of counts per 10,000), the unintegrated baseline;
- Harmony on those components (``harmonypy``, when installed), and with ``--umap`` a 2-D
  UMAP of Harmony's components (seeded, so one thread; its first fit in the process includes
  numba's compilation), the map a user draws and the peer of the 2-D VAE;
- scVI (scvi-tools' ``SCVI`` with the batch as its ``batch_key``, its defaults, on the CPU),
  with ``--scvi``;
- ``CompressionVAE`` with the negative binomial likelihood, without and with the batch as a
  covariate, in 2 dimensions (the default) and in 10;
- the query mapping: ``CompressionVAE`` with the batch as a covariate fitted on every batch
  but the last, which one ``partial_fit`` call then adds (``reference_moved``: how far the
  reference rows moved in the encoder's map, over their embedding's spread; every weight
  trains, the landmarks holding the reference, and with ``--vae frozen`` also a row with
  ``freeze_reference=True``, the new batch's columns alone trained), and the label
  transfer to that batch: ``predict`` of the model fitted with the other batches' cell
  types as ``y``, beside a 10-NN on PCA's and Harmony's components of the other batches
  (and on the UMAP of Harmony's, fitted on every batch);
  ``predict`` votes among the nearest labelled rows in the embedding by default, and with
  ``--vae classifier`` the same mapping is run again with ``classifier_weight``
  (``--classifier-weight``, default 1) so that ``predict`` is the classifier trained with
  the model: both label transfers, side by side;
- with ``--batch-free``, PCA of the same cells without the batches' effects (generated
  without per-gene factors or library shifts, or the real cells thinned by the batches' mean
  factors): what a perfect integration would keep of the cell types, since where batches
  hold the types in different proportions the batch itself tells types apart in the
  unintegrated data; with ``--umap`` also a 2-D UMAP of those components, a perfect
  integration drawn in 2-D; and the VAE without covariates fitted on those cells, the
  model's own score without the batches to integrate.

Metrics, as scIB defines them (Luecken et al. 2022):

- batch: iLISI (harmonypy's ``compute_lisi``, perplexity 30; the median, scaled to [0, 1]
  by ``(iLISI - 1) / (n_batches - 1)``) and batch ASW (the mean over cell types of ``1 -
  |silhouette|`` of the batch labels within the type; 1: batches mixed);
- bio: cLISI (scaled, ``(n_types - cLISI) / (n_types - 1)``), label ASW (``(silhouette +
  1) / 2``), and NMI and ARI of a k-means clustering with one cluster per type;
- overall: ``0.4 * mean(batch) + 0.6 * mean(bio)``;
- beside them, cell-type 10-NN accuracy (3-fold cross-validated), which issue 51 holds to
  within 0.02 of PCA's, and the batch's 10-NN accuracy (chance: one over the batches).

Without harmonypy (``pip install harmonypy``, GPL-3, a benchmark dependency only) the LISI
columns and Harmony's row are left out.

``--pbmc68k`` takes real cells instead: scanpy's bundled ``pbmc68k_reduced`` with injected
batches (:func:`pbmc68k_batched`; scanpy must be installed). ``--vae`` picks which of the
VAE's rows run, ``--vae-params`` adds parameters (JSON) to each of its fits. ``--seeds``
repeats the whole comparison on other data: each seed generates its own counts (or deals
and thins the real cells into batches its own way) and is every method's random state;
with several, each method's mean and standard deviation over them follow, with the seeds
on which its overall score is at least Harmony's on the same data.

Usage::

    python benchmarks/bench_integration.py --out benchmarks/results/integration.json
    python benchmarks/bench_integration.py --cells 10000 --genes 2000 --dims 2 --vae covariate \\
        --vae-params '{"reconstruction_fraction": 1.0}' \\
        --out benchmarks/results/integration_10k_reconstruction.json
    python benchmarks/bench_integration.py --vae covariate --seeds 0 1 2 3 4 \\
        --out benchmarks/results/integration_seeds.json
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_samples, silhouette_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

sys.path.insert(0, str(Path(__file__).parent))
from bench_time_to_quality import machine, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402
from cvae.datasets import make_batched_counts  # noqa: E402

try:
    import harmonypy
except ImportError:  # the LISI columns and Harmony's row are left out
    harmonypy = None


def lisi(Z, values):
    """Median LISI of ``values`` (integers) in ``Z`` (harmonypy's, perplexity 30)."""
    import pandas as pd

    frame = pd.DataFrame({"v": values.astype(str)})
    return float(np.median(harmonypy.compute_lisi(Z, frame, ["v"], perplexity=30)[:, 0]))


def metrics(Z, labels, batch):
    """scIB's batch and bio scores of the embedding ``Z`` and their overall (module docstring)."""
    n_types, n_batches = len(np.unique(labels)), len(np.unique(batch))
    batch_asw = np.mean([np.mean(1 - np.abs(silhouette_samples(Z[labels == c], batch[labels == c])))
                         for c in np.unique(labels) if len(np.unique(batch[labels == c])) > 1])
    clusters = KMeans(n_types, n_init=10, random_state=0).fit_predict(Z)
    out = {
        "celltype_knn": float(cross_val_score(KNeighborsClassifier(10), Z, labels, cv=3).mean()),
        "batch_knn": float(cross_val_score(KNeighborsClassifier(10), Z, batch, cv=3).mean()),
        "label_asw": float((silhouette_score(Z, labels) + 1) / 2),
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "batch_asw": float(batch_asw),
    }
    bio, batch_scores = [out["label_asw"], out["nmi"], out["ari"]], [out["batch_asw"]]
    if harmonypy is not None:
        out["ilisi"] = (lisi(Z, batch) - 1) / (n_batches - 1)
        out["clisi"] = (n_types - lisi(Z, labels)) / (n_types - 1)
        bio.append(out["clisi"])
        batch_scores.append(out["ilisi"])
    out["bio"], out["batch"] = float(np.mean(bio)), float(np.mean(batch_scores))
    out["overall"] = 0.4 * out["batch"] + 0.6 * out["bio"]
    return out


def query_mapping(vae, X, batch, labels):
    """``((Z, seconds), moved, accuracy, vote)``: ``vae`` fitted on every batch but the last (with
    their cell types as ``y``), which ``partial_fit`` then maps (one call: its new
    category's weights alone train); ``Z`` the embedding of all rows after, ``moved`` the
    median distance the reference rows moved in the encoder's map, over the spread of
    their embedding (the square root of its total variance), ``accuracy`` that of
    ``predict`` on the last batch's cells (label transfer), and for a model with a
    classifier ``vote`` that of its vote (``label_transfer="vote"``; else None)."""
    reference, query = batch != batch.max(), batch == batch.max()
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae.fit(X[reference], labels[reference], covariates=batch[reference])
        vae.placement = "encoder"
        before = vae.transform(X[reference], covariates=batch[reference])
        vae.placement = "auto"
        vae.partial_fit(X[query], covariates=batch[query])
    seconds = time.perf_counter() - started
    Z = vae.transform(X, covariates=batch)
    vae.placement = "encoder"
    after = vae.transform(X[reference], covariates=batch[reference])
    moved = np.median(np.linalg.norm(after - before, axis=1)) / np.sqrt(before.var(axis=0).sum())
    vae.placement = "auto"
    accuracy = np.mean(vae.predict(X[query], covariates=batch[query]) == labels[query])
    vote = None
    if vae.classifier_weight > 0:  # the same model's vote, beside its classifier
        vote = float(np.mean(vae.set_params(label_transfer="vote").predict(X[query], covariates=batch[query])
                             == labels[query]))
    return (Z, seconds), float(moved), float(accuracy), vote


def fit_scvi(X, batch, max_epochs=None, seed=0):
    """``(Z, seconds)``: scvi-tools' SCVI with the batch as its ``batch_key``, its defaults
    (10-D latent; ``max_epochs`` its own rule unless given) on the CPU."""
    import anndata
    import pandas as pd
    import scvi

    obs = pd.DataFrame({"batch": batch.astype(str)}, index=[str(i) for i in range(X.shape[0])])
    adata = anndata.AnnData(X=X.astype(np.float32), obs=obs)
    started = time.perf_counter()
    scvi.settings.seed = seed
    scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
    model = scvi.model.SCVI(adata)
    model.train(max_epochs=max_epochs, accelerator="cpu", enable_progress_bar=False)
    Z = model.get_latent_representation()
    return Z, time.perf_counter() - started


def pbmc68k_batched(n_batches, batch_effect, seed=0, batch_free=False):
    """Real cells with injected batches: scanpy's bundled ``pbmc68k_reduced`` (700 cells, 765
    genes, 10 FACS-sorted types), whose counts are recovered exactly from its ``.raw`` (log1p
    of counts per 10,000 of ``obs["n_counts"]``), dealt into ``n_batches`` batches in
    type-dependent proportions (a Dirichlet of concentration 1 per batch), each batch's
    counts thinned binomially by per-gene factors (log-normal, spread ``batch_effect``,
    scaled to at most 1) and a library factor. With ``batch_free``, the same draws but every
    cell thinned by the batches' mean factors: the same cells at about the same depth,
    without a batch effect. Returns ``(X, cell types, batch)``."""
    import scanpy as sc
    import scipy.sparse as sp

    adata = sc.datasets.pbmc68k_reduced()
    counts = np.rint(np.expm1(adata.raw.X.toarray()) * adata.obs["n_counts"].to_numpy()[:, None] / 1e4)
    types = adata.obs["bulk_labels"].astype(str).to_numpy()
    codes = np.unique(types, return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(n_batches), size=codes.max() + 1)  # each type's spread over the batches
    batch = np.array([rng.choice(n_batches, p=weights[c]) for c in codes])
    factors = rng.lognormal(0.0, batch_effect, (n_batches, counts.shape[1]))
    factors *= rng.uniform(0.5, 1.0, (n_batches, 1)) / factors.max(axis=1, keepdims=True)
    thinned = rng.binomial(counts.astype(np.int64), factors.mean(axis=0) if batch_free else factors[batch])
    keep = thinned.sum(axis=1) > 0
    return sp.csr_matrix(thinned[keep].astype(np.float32)), types[keep], batch[keep]


def batched_data(args, seed, batch_free=False):
    """``(X, cell types, batch)`` of one draw: the real cells (``--pbmc68k``) or generated
    counts; with ``batch_free`` the same cells without the batches' effects (generated with
    no per-gene factors or library shifts, the random draws otherwise the same)."""
    if args.pbmc68k:
        return pbmc68k_batched(args.batches, args.batch_effect, seed=seed, batch_free=batch_free)
    effects = {"batch_effect": 0.0, "library_shift": 0.0} if batch_free else {"batch_effect": args.batch_effect}
    X, labels, batch, _ = make_batched_counts(args.cells, args.genes, n_batches=args.batches, random_state=seed,
                                              **effects)
    return X, labels, batch


def log_normalized(X):
    """``log1p`` of counts per 10,000, dense."""
    totals = np.asarray(X.sum(axis=1)).ravel()
    return np.log1p(X.multiply(1e4 / np.maximum(totals, 1)[:, None]).toarray())


def vae_model(args, n_components, seed):
    """The benchmark's ``CompressionVAE``: the negative binomial, ``--vae-params`` and ``--max-steps``."""
    budget = {**json.loads(args.vae_params), **({} if args.max_steps is None else {"max_steps": args.max_steps})}
    return CompressionVAE(n_components=n_components, likelihood="negative_binomial", random_state=seed, **budget)


def timed(compute):
    """``(compute(), seconds it took)``."""
    started = time.perf_counter()
    return compute(), time.perf_counter() - started


def principal_components(args, X, seed):
    """The first ``--components`` principal components of the log-normalized counts ``X``."""
    return PCA(args.components, random_state=seed).fit_transform(log_normalized(X))


def umap_2d(Z, seed):
    """A seeded 2-D UMAP of ``Z`` (umap-learn)."""
    import umap

    return umap.UMAP(random_state=seed).fit_transform(Z)


def vae_embedding(args, n_components, seed, X, covariates=None):
    """``fit_transform`` of the benchmark's VAE (:func:`vae_model`), its warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vae_model(args, n_components, seed).fit_transform(X, covariates=covariates)


def batch_free_rows(args, seed):
    """The rows of the same cells without batch effects (``--batch-free``): PCA, with
    ``--umap`` its 2-D UMAP, and the VAE without covariates in each of ``--dims``."""
    X, labels, batch = batched_data(args, seed, batch_free=True)
    methods = {"PCA, no batch effect": timed(lambda: principal_components(args, X, seed))}
    if args.umap:  # a perfect integration drawn in 2-D
        methods["UMAP of PCA, no batch effect (2-D)"] = timed(lambda: umap_2d(methods["PCA, no batch effect"][0], seed))
    for n_components in [int(d) for d in args.dims.split(",")]:
        methods[f"CompressionVAE {n_components}-D, no batch effect"] = timed(
            lambda: vae_embedding(args, n_components, seed, X))
    return [{"method": name, "fit_seconds": seconds, **metrics(Z, labels, batch)}
            for name, (Z, seconds) in methods.items()]


def run_methods(args, X, labels, batch, seed):
    """The rows of every method asked for on one data set, ``seed`` the random state of each."""
    methods = {"PCA (unintegrated)": timed(lambda: principal_components(args, X, seed))}
    pcs = methods["PCA (unintegrated)"][0]
    if harmonypy is not None:
        import pandas as pd

        started = time.perf_counter()
        harmony = harmonypy.run_harmony(pcs, pd.DataFrame({"batch": batch.astype(str)}), ["batch"],
                                        random_state=seed, verbose=False)
        Z = np.asarray(harmony.Z_corr)
        Z = Z.T if Z.shape[0] != len(pcs) else Z
        methods["Harmony on PCA"] = (Z, time.perf_counter() - started + methods["PCA (unintegrated)"][1])
        if args.umap:  # the 2-D map a user draws of Harmony's components, a peer of the 2-D VAE
            Z, seconds = timed(lambda: umap_2d(methods["Harmony on PCA"][0], seed))
            methods["UMAP of Harmony (2-D)"] = (Z, seconds + methods["Harmony on PCA"][1])
    if args.scvi:
        methods["scVI (10-D latent)"] = fit_scvi(X, batch, args.scvi_epochs, seed)
    moved, transfer, votes = {}, {}, {}
    for n_components in [int(d) for d in args.dims.split(",")]:
        def model():
            return vae_model(args, n_components, seed)

        for covariates in [c for c, kind in ((None, "plain"), (batch, "covariate")) if kind in args.vae]:
            condition = "batch covariate" if covariates is not None else "no covariates"
            methods[f"CompressionVAE {n_components}-D, {condition}"] = timed(
                lambda: vae_embedding(args, n_components, seed, X, covariates))
        name = f"CompressionVAE {n_components}-D, last batch mapped"
        if "mapped" in args.vae:
            methods[name], moved[name], transfer[name], _ = query_mapping(model(), X, batch, labels)
        if "frozen" in args.vae:
            frozen = model().set_params(freeze_reference=True)
            methods[name + ", reference frozen"], moved[name + ", reference frozen"], \
                transfer[name + ", reference frozen"], _ = query_mapping(frozen, X, batch, labels)
        if "classifier" in args.vae:
            name += ", classifier"
            classifier = model().set_params(classifier_weight=args.classifier_weight)
            methods[name], moved[name], transfer[name], votes[name] = query_mapping(classifier, X, batch, labels)
    last = batch == batch.max()
    for name in ("PCA (unintegrated)", "Harmony on PCA", "UMAP of Harmony (2-D)"):  # 10-NN transfer to the last batch
        if name in methods:
            Z = methods[name][0]
            transfer[name] = float(KNeighborsClassifier(10).fit(Z[~last], labels[~last]).score(Z[last], labels[last]))
    return [{"method": name, "fit_seconds": seconds, **metrics(Z, labels, batch),
             **({"reference_moved": moved[name]} if name in moved else {}),
             **({"last_batch_label_transfer": transfer[name]} if name in transfer else {}),
             **({"last_batch_vote_transfer": votes[name]} if name in votes else {})}
            for name, (Z, seconds) in methods.items()]


def print_rows(rows, n_batches, n_components):
    """The table of one data set's rows."""
    columns = ["fit_seconds", "celltype_knn", "label_asw", "nmi", "ari", "clisi", "batch_asw", "ilisi", "batch_knn",
               "overall", "reference_moved", "last_batch_label_transfer", "last_batch_vote_transfer"]
    columns = [c for c in columns if any(c in row for row in rows)]
    print(f"{'method':<40}" + "".join(f"{c[:12]:>13}" for c in columns))
    for row in rows:
        print(f"{row['method']:<40}" + "".join(f"{row[c]:>13.3f}" if c in row else f"{'':>13}" for c in columns))
    print(f"batch 10-NN chance: {1 / n_batches:.3f}; PCA and Harmony in {n_components} dimensions; fit_seconds for "
          "Harmony include its PCA; 'last batch mapped': fit on the other batches, the last one "
          "added by one partial_fit, fit_seconds both together; last_batch_label_transfer: accuracy on the last "
          "batch's cell types, by predict for the mapped model (fitted with the other batches' types as y), by a "
          "10-NN on the other batches' cells for PCA and Harmony; last_batch_vote_transfer: the vote of the model "
          "with a classifier (label_transfer='vote')")


SUMMARIZED = ("celltype_knn", "batch_asw", "ilisi", "overall", "fit_seconds", "reference_moved",
              "last_batch_label_transfer", "last_batch_vote_transfer")


def summarized(rows):
    """Each method's mean and standard deviation over the seeds of ``SUMMARIZED`` metrics, and
    on how many seeds its overall score is at least Harmony's on the same data; printed."""
    harmony = {row["seed"]: row["overall"] for row in rows if row["method"] == "Harmony on PCA"}
    summary = []
    for method in dict.fromkeys(row["method"] for row in rows):
        own = [row for row in rows if row["method"] == method]
        entry = {"method": method, "seeds": len(own)}
        for name in SUMMARIZED:
            values = np.array([row[name] for row in own if name in row])
            if len(values):
                sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
                entry[name] = {"mean": float(values.mean()), "sd": sd}
        if harmony:
            entry["overall_at_least_harmony"] = sum(row["overall"] >= harmony[row["seed"]] for row in own)
            entry["overall_minus_harmony"] = float(np.mean([row["overall"] - harmony[row["seed"]] for row in own]))
        summary.append(entry)
    names = [n for n in SUMMARIZED if any(n in e for e in summary)]
    print(f"\nover {len({row['seed'] for row in rows})} seeds, mean (sd)")
    against = f"{'>= Harmony':>12}{'- Harmony':>11}" if harmony else ""
    print(f"{'method':<40}" + "".join(f"{n[:12]:>16}" for n in names) + against)
    for entry in summary:
        cells = "".join(f"{entry[n]['mean']:>9.3f} ({entry[n]['sd']:.3f})" if n in entry else f"{'':>16}"
                        for n in names)
        if harmony:
            cells += f"{entry['overall_at_least_harmony']:>10}/{entry['seeds']}{entry['overall_minus_harmony']:>+11.3f}"
        print(f"{entry['method']:<40}" + cells)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=4000)
    parser.add_argument("--genes", type=int, default=500)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-effect", type=float, default=0.5)
    parser.add_argument("--components", type=int, default=20, help="principal components for PCA and Harmony")
    parser.add_argument("--max-steps", type=int, default=None, help="the VAE's budget (default: the estimator's)")
    parser.add_argument("--dims", default="2,10", help="the VAE's n_components, separated by commas")
    parser.add_argument("--vae-params", default="{}", help="JSON of further CompressionVAE parameters")
    parser.add_argument("--vae", nargs="+", choices=["plain", "covariate", "mapped", "frozen", "classifier"],
                        default=["plain", "covariate", "mapped"],
                        help="the VAE's rows: without covariates, with the batch, the last batch mapped (every "
                             "weight trained, the landmarks holding the reference; its new columns alone, "
                             "freeze_reference=True; predict by a classifier trained with the model)")
    parser.add_argument("--classifier-weight", type=float, default=1.0, help="classifier_weight of --vae classifier")
    parser.add_argument("--scvi", action="store_true", help="add scVI (scvi-tools must be installed)")
    parser.add_argument("--umap", action="store_true",
                        help="add UMAP (umap-learn) of Harmony's components, 2-D, seeded: the 2-D VAE's peer")
    parser.add_argument("--pbmc68k", action="store_true",
                        help="real cells (scanpy's pbmc68k_reduced) with injected batches, instead of generated counts")
    parser.add_argument("--batch-free", action="store_true",
                        help="add PCA (with --umap also its UMAP) and the VAE of the same cells without the batch "
                             "effects (generated without them, or the real cells thinned by the batches' mean "
                             "factors): what a perfect integration keeps")
    parser.add_argument("--scvi-epochs", type=int, default=None, help="scVI's max_epochs (default: its own rule)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="random states: each generates its own data (or injects its own batches into the real "
                             "cells) and seeds every method; with several, a summary over them follows the tables")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = []
    for seed in args.seeds:
        X, labels, batch = batched_data(args, seed)
        args.cells, args.genes = X.shape
        if len(args.seeds) > 1:
            print(f"seed {seed}")
        seed_rows = run_methods(args, X, labels, batch, seed)
        if args.batch_free:  # what a perfect integration would keep of the cell types
            seed_rows += batch_free_rows(args, seed)
        print_rows(seed_rows, args.batches, args.components)
        rows += [dict(row, seed=seed) for row in seed_rows] if len(args.seeds) > 1 else seed_rows
    out = {"machine": machine(), "data": vars(args), "rows": rows}
    if len(args.seeds) > 1:
        out["summary"] = summarized(rows)
    write_json(args.out, out)
    return rows


if __name__ == "__main__":
    main()
