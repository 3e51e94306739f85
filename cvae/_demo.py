"""The README's main job: embed scikit-learn's digits and compare with PCA."""

import time

from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from .estimator import CompressionVAE
from .plotting import plot_embedding

__all__ = ["run_demo"]


def _knn_accuracy(reducer, X_train, y_train, X_test, y_test):
    classifier = KNeighborsClassifier(n_neighbors=10).fit(reducer.transform(X_train), y_train)
    return classifier.score(reducer.transform(X_test), y_test)


def run_demo(max_steps=None, plot="digits_embedding.png", random_state=0, verbose=True, print_fn=print):
    """Fit a 2-D CompressionVAE on digits, report quality against PCA, optionally plot.

    Parameters
    ----------
    max_steps : int, default=None
        Step budget; ``None`` keeps the estimator's default.
    plot : str or None, default="digits_embedding.png"
        Where to save the embedding figure (skipped, with a note, without matplotlib).
    random_state : int, default=0
    verbose : bool, default=True
        Show the training progress bar.
    print_fn : callable, default=print

    Returns
    -------
    results : dict
        ``validation_loss``, ``knn_accuracy``, ``pca_knn_accuracy``, ``fit_seconds``,
        ``n_steps``, ``plot`` (path written, or None).
    """
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=random_state, stratify=y)
    params = {"n_components": 2, "random_state": random_state, "verbose": verbose}
    if max_steps is not None:
        params["max_steps"] = max_steps
    vae = CompressionVAE(**params)
    print_fn(f"Fitting CompressionVAE on digits: {X_train.shape[0]} train / {X_test.shape[0]} test images, "
             f"{X.shape[1]} features -> 2 components (device: auto)")
    start = time.perf_counter()
    vae.fit(X_train)
    fit_seconds = time.perf_counter() - start
    pca = PCA(n_components=2, random_state=random_state).fit(X_train)
    results = {
        "validation_loss": vae.best_validation_loss_,
        "knn_accuracy": _knn_accuracy(vae, X_train, y_train, X_test, y_test),
        "pca_knn_accuracy": _knn_accuracy(pca, X_train, y_train, X_test, y_test),
        "fit_seconds": fit_seconds,
        "n_steps": vae.n_steps_,
        "plot": None,
    }
    print_fn(f"steps: {vae.n_steps_} ({vae.stop_reason_}) in {fit_seconds:.1f} s on {vae.device_}")
    best = min(vae.history_, key=lambda row: row["validation_loss"])
    what = "negative ELBO + neighbour term" if vae.neighbor_weight_ else "negative ELBO"
    print_fn(f"best validation loss ({what}, nats per image): {results['validation_loss']:.2f}; "
             f"validation ELBO there: {best['validation_elbo']:.2f}")
    print_fn(f"test ELBO (nats per image): {vae.score(X_test):.2f}")
    print_fn(f"10-NN accuracy of the 2-D test embedding: CompressionVAE {results['knn_accuracy']:.3f}, "
             f"PCA {results['pca_knn_accuracy']:.3f}")
    if plot:
        try:
            plot_embedding(vae.transform(X_test), labels=y_test, filename=plot, title="digits, test set")
            results["plot"] = plot
            print_fn(f"embedding plot: {plot}")
        except ImportError as exc:
            print_fn(f"no plot: {exc}")
    return results
