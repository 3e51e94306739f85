"""Labels shaping the embedding: ``fit(X, y)`` with all, some or no labels, beside UMAP.

For each dataset and share of labelled training rows (the rest marked -1, drawn at a fixed
seed), CompressionVAE and UMAP (``target_weight=0.5`` for both, as the issue asks; UMAP
when ``umap-learn`` is installed) are fitted on the same rows and labels, and scored on the
test rows: 10-NN accuracy of the test embedding (classifier fitted on the training rows'
embedding with all their true labels) and trustworthiness(10). A share of 0 is the
unsupervised fit; ``--per-class N`` adds a fit with N labelled rows of each class. Beside
them, classifiers of the test rows from the same labelled rows: scikit-learn's
``LabelSpreading`` (k-NN kernel) on the data, 10-NN and 1-NN classifiers on
CompressionVAE's embedding fitted on the labelled training rows alone, and a 10-NN on the
embedding of all training rows labelled by ``LabelSpreading`` over that embedding, and
``CompressionVAE.predict`` (label transfer: accuracy, and ``predict_proba``'s log-loss and
expected calibration error): a vote among the nearest labelled rows in the embedding, and
with ``--classifier-weight W`` also that of a second fit with ``classifier_weight=W``, whose
``predict`` is a classifier trained with the model, and that model's vote
(``label_transfer="vote"``). ``--vae-params`` adds CompressionVAE parameters to its fits.
``--supervised`` adds classifiers of the data given every training label (an RBF SVC tuned
by 5-fold search, 1-NN and 10-NN on the features, an MLP over three seeds): what labels
could at most make of the test rows, for the targets that ask labels to raise them.

Usage::

    python benchmarks/bench_labels.py --datasets digits --shares 0 0.1 1 \\
        --out benchmarks/results/labels_digits.json
    python benchmarks/bench_labels.py --data mnist.npz --datasets mnist --shares 0 0.01 \\
        --out benchmarks/results/labels_mnist.json
    python benchmarks/bench_labels.py --data mnist.npz --datasets mnist --shares --per-class 10 \\
        --out benchmarks/results/labels_mnist_100.json
    python benchmarks/bench_labels.py --datasets digits --shares --supervised --methods vae \\
        --out benchmarks/results/labels_digits_supervised.json
"""

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.semi_supervised import LabelSpreading

sys.path.insert(0, str(Path(__file__).parent))

from bench_time_to_quality import DATASETS, load_dataset, machine, score, warm_umap, write_json  # noqa: E402

from cvae import CompressionVAE  # noqa: E402


def partial_labels(y, share, seed):
    """``y`` with all but ``share`` of its rows (at least one per class) marked -1, as int64
    (MNIST's uint8 labels cannot hold -1: it would become the class 255)."""
    y = np.asarray(y).astype(np.int64)
    if share >= 1:
        return y
    rng = np.random.default_rng(seed)
    kept = np.zeros(len(y), dtype=bool)
    kept[rng.permutation(len(y))[: int(round(share * len(y)))]] = True
    for label in np.unique(y):  # every class labelled somewhere
        if not kept[y == label].any():
            kept[rng.choice(np.flatnonzero(y == label))] = True
    return np.where(kept, y, -1)


def labels_per_class(y, per_class, seed):
    """``y`` (as int64) with all but ``per_class`` rows of each class marked -1."""
    y = np.asarray(y).astype(np.int64)
    rng = np.random.default_rng(seed)
    kept = np.concatenate([rng.choice(np.flatnonzero(y == label), per_class, replace=False) for label in np.unique(y)])
    return np.where(np.isin(np.arange(len(y)), kept), y, -1)


def supervised(X_train, X_test, y_train, y_test, seed):
    """Test accuracy of classifiers of the data fitted on every training label."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    svc = GridSearchCV(SVC(), {"C": [1, 10, 100], "gamma": ["scale", 0.01, 0.001]}, cv=5).fit(X_train, y_train)
    mlp = [MLPClassifier((256,), max_iter=500, random_state=seed + s).fit(X_train, y_train).score(X_test, y_test)
           for s in range(3)]
    return {"svc_tuned": float(svc.score(X_test, y_test)), "svc_params": svc.best_params_,
            "knn1": float(KNeighborsClassifier(1).fit(X_train, y_train).score(X_test, y_test)),
            "knn10": float(KNeighborsClassifier(10).fit(X_train, y_train).score(X_test, y_test)),
            "mlp_mean": float(np.mean(mlp))}


def predict_scores(model, X_test, y_test):
    """``CompressionVAE.predict``'s accuracy on the test rows, and ``predict_proba``'s
    log-loss and expected calibration error (10 bins of the top probability)."""
    from sklearn.metrics import log_loss

    proba = model.predict_proba(X_test)
    predicted = model.classes_[proba.argmax(axis=1)]
    confidence, correct = proba.max(axis=1), predicted == np.asarray(y_test)
    bins = np.minimum((confidence * 10).astype(int), 9)
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * np.mean(bins == b)
              for b in range(10) if (bins == b).any())
    return {"accuracy": float(correct.mean()), "log_loss": float(log_loss(y_test, proba, labels=model.classes_)),
            "ece": float(ece)}


def svc_on_labelled(X, y, X_test, y_test):
    """Test accuracy of an RBF SVC tuned (3-fold search, fewer folds for fewer rows per
    class) on the labelled rows alone: what the labels give without the unlabelled rows."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    folds = int(min(3, np.bincount(y).min()))
    grid = {"C": [1, 10, 100], "gamma": ["scale", 0.01, 0.001]}
    model = GridSearchCV(SVC(), grid, cv=folds).fit(X, y) if folds >= 2 else SVC().fit(X, y)
    return float(model.score(X_test, y_test))


def fit_method(method, X_train, X_test, y_fit, args):
    started = time.perf_counter()
    if method == "umap":
        import umap

        model = umap.UMAP(random_state=args.seed, target_weight=args.target_weight)
        Z_train = model.fit_transform(X_train, y=None if y_fit is None else y_fit)
        seconds = time.perf_counter() - started
        return Z_train, model.transform(X_test), seconds, model
    model = CompressionVAE(random_state=args.seed, target_weight=args.target_weight, **json.loads(args.vae_params))
    model.fit(X_train, y_fit)
    seconds = time.perf_counter() - started
    return model.embedding_, model.transform(X_test), seconds, model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="MNIST as an .npz of X_train, y_train, X_test, y_test")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=["digits"])
    parser.add_argument("--shares", nargs="*", type=float, default=[0, 0.1, 1])
    parser.add_argument("--per-class", type=int, default=None, help="also a fit with this many labels per class")
    parser.add_argument("--methods", nargs="+", choices=["vae", "umap"], default=["vae", "umap"])
    parser.add_argument("--target-weight", type=float, default=0.5)
    parser.add_argument("--classifier-weight", type=float, default=None,
                        help="also predict by a fit with this classifier_weight (a classifier trained with the model)")
    parser.add_argument("--vae-params", default="{}",
                        help="JSON of further CompressionVAE parameters (both fits), e.g. '{\"n_components\": 10}'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--supervised", action="store_true", help="also classifiers given every training label")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*n_jobs value.*")
    methods = list(args.methods)
    if "umap" in methods and not warm_umap():
        methods.remove("umap")
    document = {"machine": machine(), "args": vars(args), "results": {}}
    for name in args.datasets:
        X_train, X_test, y_train, y_test = load_dataset(name, args.data, args.seed)
        results = document["results"][name] = {}
        if args.supervised:
            results["supervised"] = supervised(X_train, X_test, y_train, y_test, args.seed)
            print(f"{name:9s} every label: {results['supervised']}", flush=True)
            write_json(args.out, document)
        settings = [(str(share), share) for share in args.shares]
        if args.per_class:
            settings.append((f"{args.per_class} per class", args.per_class * len(np.unique(y_train)) / len(y_train)))
        for key, share in settings:
            if key.endswith("per class"):
                y_fit = labels_per_class(y_train, args.per_class, args.seed)
            else:
                y_fit = None if share == 0 else partial_labels(np.asarray(y_train), share, args.seed)
            row = results[key] = {}
            for method in methods:
                Z_train, Z_test, seconds, model = fit_method(method, X_train, X_test, y_fit, args)
                row[method] = dict(score(Z_train, Z_test, X_test, y_train, y_test), seconds=seconds)
                if method == "vae" and y_fit is not None:
                    known = y_fit != -1
                    for k, name_k in ((10, "vae_knn_on_labelled"), (1, "vae_1nn_on_labelled")):
                        row[name_k] = float(KNeighborsClassifier(min(k, int(known.sum())))
                                            .fit(Z_train[known], y_fit[known]).score(Z_test, y_test))
                    spread = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.99, max_iter=3000).fit(Z_train, y_fit)
                    row["vae_knn_after_spreading_on_embedding"] = float(
                        KNeighborsClassifier(10).fit(Z_train, spread.transduction_).score(Z_test, y_test))
                    row["vae_predict"] = predict_scores(model, X_test, y_test)
                    row["svc_tuned_on_labelled"] = svc_on_labelled(X_train[known], y_fit[known], X_test, y_test)
                    print(f"{name:9s} labels {key:>12s} predict accuracy {row['vae_predict']['accuracy']:.4f}  "
                          f"log-loss {row['vae_predict']['log_loss']:.3f}  ECE {row['vae_predict']['ece']:.3f}  "
                          f"SVC tuned on the labelled rows {row['svc_tuned_on_labelled']:.4f}", flush=True)
                    if args.classifier_weight is not None:
                        started = time.perf_counter()
                        classifier = CompressionVAE(random_state=args.seed, target_weight=args.target_weight,
                                                    classifier_weight=args.classifier_weight,
                                                    **json.loads(args.vae_params)).fit(X_train, y_fit)
                        row["vae_classifier_predict"] = dict(predict_scores(classifier, X_test, y_test),
                                                             seconds=time.perf_counter() - started)
                        # the same model's vote: an embedding the classifier's term also shaped
                        row["vae_classifier_vote_predict"] = predict_scores(
                            classifier.set_params(label_transfer="vote"), X_test, y_test)
                        print(f"{name:9s} labels {key:>12s} classifier_weight={args.classifier_weight}: predict "
                              f"accuracy {row['vae_classifier_predict']['accuracy']:.4f}  log-loss "
                              f"{row['vae_classifier_predict']['log_loss']:.3f}  ECE "
                              f"{row['vae_classifier_predict']['ece']:.3f}; its vote "
                              f"{row['vae_classifier_vote_predict']['accuracy']:.4f}", flush=True)
                print(f"{name:9s} labels {key:>12s} {method:5s} 10-NN {row[method]['knn']:.3f}  "
                      f"trust {row[method]['trustworthiness']:.3f}  fit {seconds:6.1f} s", flush=True)
            if y_fit is not None and share < 1:
                started = time.perf_counter()
                unlabelled_test = -np.ones(len(y_test), dtype=np.int64)
                spreading = LabelSpreading(kernel="knn", n_neighbors=10)
                spreading.fit(np.vstack([X_train, X_test]), np.r_[y_fit, unlabelled_test])
                row["label_spreading"] = {"accuracy": float(np.mean(spreading.transduction_[len(y_fit):] == y_test)),
                                          "seconds": time.perf_counter() - started}
            write_json(args.out, document)
    return document


if __name__ == "__main__":
    main()
