"""Choose the latent size and beta by cross-validated ELBO, inside a scikit-learn Pipeline.

    python examples/grid_search.py [--max-steps 2000]

``score`` is the mean ELBO (higher is better), so GridSearchCV needs no custom scorer. The
Pipeline scales pixels to [0, 1] first (so the Bernoulli likelihood is chosen) and a
k-nearest-neighbours classifier then reads the embedding. The fits leave out the
neighbour term, which the ELBO does not score. Took 74 s on a 2-core AMD EPYC.
"""

import argparse
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from cvae import CompressionVAE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=2000)
    args = parser.parse_args(argv)
    # Short budgets on purpose: the comparison is what matters, not each fit's convergence.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)

    vae = CompressionVAE(max_steps=args.max_steps, neighbor_weight=0, random_state=0)
    pipeline = make_pipeline(MinMaxScaler(), vae)
    grid = {"compressionvae__n_components": [2, 8], "compressionvae__beta": [0.5, 1.0]}
    search = GridSearchCV(pipeline, grid, cv=3).fit(X_train)
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"  n_components={params['compressionvae__n_components']}, beta={params['compressionvae__beta']}: "
              f"validation ELBO {score:.2f}")
    best = search.best_params_
    print(f"best by ELBO: n_components={best['compressionvae__n_components']}, beta={best['compressionvae__beta']}")

    # The selected reducer in front of a classifier.
    reducer = search.best_estimator_.set_params(compressionvae__target_weight=0)  # the classifier's y is not for it
    classifier = make_pipeline(reducer, KNeighborsClassifier(n_neighbors=10)).fit(X_train, y_train)
    accuracy = classifier.score(X_test, y_test)
    print(f"10-NN accuracy on its embedding of the test digits: {accuracy:.3f}")
    return search, accuracy


if __name__ == "__main__":
    main()
