"""Sparse text: TF-IDF rows (a scipy.sparse matrix, never densified whole) embedded in 2-D.

scikit-learn bundles no text corpus (its 20 newsgroups loader downloads one), so the
documents are generated: each draws its words from one of a few topics' vocabularies and a
shared one. With a real corpus, replace ``documents`` and ``topic``.

    python examples/sparse_text.py [--documents N] [--max-steps N]
"""

import argparse

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from cvae import CompressionVAE
from cvae.datasets import make_documents


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=4000)
    parser.add_argument("--max-steps", type=int, default=3000)
    args = parser.parse_args(argv)

    documents, topic = make_documents(args.documents)
    X = TfidfVectorizer().fit_transform(documents)  # CSR, rows of unit length
    X_train, X_test, y_train, y_test = train_test_split(X, topic, random_state=0)
    vae = CompressionVAE(likelihood="gaussian", max_steps=args.max_steps, validation_interval=250,
                         n_iter_no_change=4, random_state=0).fit(X_train)
    accuracy = KNeighborsClassifier(10).fit(vae.transform(X_train), y_train).score(vae.transform(X_test), y_test)
    print(f"{X.shape[0]} documents x {X.shape[1]} terms ({100 * X.nnz / np.prod(X.shape):.1f}% non-zero): "
          f"10-NN topic accuracy of unseen documents in 2-D {accuracy:.2f}")
    return vae, accuracy


if __name__ == "__main__":
    main()
