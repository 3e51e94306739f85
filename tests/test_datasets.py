"""Generated data with known structure (cvae.datasets): counts, and counts in batches."""

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from cvae.datasets import make_batched_counts, make_counts


def _batch_accuracy(X, batch):
    """Cross-validated 10-NN accuracy of predicting the batch from log1p counts' 20 components."""
    Z = TruncatedSVD(20, random_state=0).fit_transform(X.log1p())
    return cross_val_score(KNeighborsClassifier(10), Z, batch, cv=3).mean()


def test_batched_counts_hold_known_batch_effects_and_proportions():
    X, labels, batch, library = make_batched_counts(1500, 200, n_batches=3, library_shift=0.7, composition=0,
                                                    random_state=0)
    assert X.shape == (1500, 200) and labels.shape == batch.shape == library.shape == (1500,)
    assert np.array_equal(X.data, np.round(X.data)) and X.data.min() > 0 and set(np.unique(batch)) == {0, 1, 2}
    # each batch's totals follow its shifted library sizes
    totals = np.asarray(X.sum(axis=1)).ravel()
    for b in range(3):
        assert abs(np.log(totals[batch == b].mean() / library[batch == b].mean())) < 0.1
    # composition=0: every batch holds the clusters in equal proportions
    counts = np.array([[np.sum((batch == b) & (labels == c)) for c in range(8)] for b in range(3)])
    assert counts.min() > 0.5 * counts.mean()
    # the same seed, the same data
    again = make_batched_counts(1500, 200, n_batches=3, library_shift=0.7, composition=0, random_state=0)[0]
    assert (X != again).nnz == 0


def test_the_batch_can_be_read_from_the_counts_only_when_there_is_an_effect():
    kwargs = dict(n_batches=3, composition=0, random_state=1)
    X, _, batch, _ = make_batched_counts(1500, 200, batch_effect=0.8, **kwargs)
    none, _, batch_none, _ = make_batched_counts(1500, 200, batch_effect=0.0, library_shift=0.0, **kwargs)
    assert _batch_accuracy(X, batch) > 0.9  # the effect separates the batches
    assert _batch_accuracy(none, batch_none) < 0.45  # chance is 1/3


def test_one_batch_without_effects_is_make_counts_distribution():
    X, labels, batch, _ = make_batched_counts(2000, 100, n_batches=1, batch_effect=0.0, library_shift=0.0,
                                              composition=0, random_state=0)
    Y, _, _ = make_counts(2000, 100, random_state=0)
    assert set(np.unique(batch)) == {0}
    # the same model: mean totals and sparsity agree within sampling noise
    assert abs(X.sum() / Y.sum() - 1) < 0.1 and abs(X.nnz / Y.nnz - 1) < 0.1
