"""What a fitted model does with rows (cvae._inference): embed, decode, score and sample, in
the data's scale and precision, repeatably."""

import warnings

import numpy as np
import pytest

from cvae import CompressionVAE, _random
from cvae.neighbors.vote import vote_smoothing

# Short fits, which warn that they stopped at max_steps.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_keep_float_input_precision(X, fast, dtype):
    vae = CompressionVAE(**fast).fit(X)
    assert vae.transform(X.astype(dtype)).dtype == dtype
    assert vae.inverse_transform(np.zeros((2, 2), dtype)).dtype == dtype


def test_transform_is_deterministic_and_batch_independent(X, fast):
    vae = CompressionVAE(eval_batch_size=7, iaf_flow_length=2, **fast).fit(X)
    Z = vae.transform(X)
    assert np.array_equal(Z, vae.transform(X))
    np.testing.assert_allclose(Z[:7], vae.set_params(eval_batch_size=1000).transform(X[:7]), rtol=1e-5, atol=1e-6)


def test_inverse_transform_returns_original_scale(X, fast):
    big = X * 1000 + 5000
    vae = CompressionVAE(**dict(fast, max_steps=200)).fit(big)
    recon = vae.inverse_transform(vae.transform(big))
    assert abs(recon.mean() - big.mean()) < 0.1 * big.std()
    assert np.mean((recon - big) ** 2) < big.var()  # better than predicting the mean


@pytest.mark.parametrize("normalize", ["global", "feature"])
def test_elbo_is_in_original_data_scale(X, fast, normalize):
    # Normalization absorbs a rescaling by 4 (a power of two, so exact in floating point):
    # the same network results and the density changes by the Jacobian, -log 4 per
    # rescaled feature ("feature" leaves constant features at scale 1).
    a = CompressionVAE(normalize=normalize, **fast).fit(X)
    b = CompressionVAE(normalize=normalize, **fast).fit(X * 4)
    n_rescaled = int(np.sum(b.scale_ != a.scale_))
    assert n_rescaled == (64 if normalize == "global" else int(np.sum(X.std(0) > 0)))
    np.testing.assert_allclose(b.score_samples(X * 4), a.score_samples(X) - n_rescaled * np.log(4), rtol=1e-5)


@pytest.mark.parametrize("flows", [0, 2])
def test_score_samples_are_repeatable_and_independent_of_other_rows(X, fast, flows):
    vae = CompressionVAE(iaf_flow_length=flows, **fast).fit(X)
    s = vae.score_samples(X)
    assert np.array_equal(s, vae.score_samples(X))
    assert vae.score(X) == pytest.approx(s.mean())
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(vae.score_samples(X[order]), s[order], rtol=1e-5)
    np.testing.assert_allclose(vae.set_params(eval_batch_size=7).score_samples(X[:20]), s[:20], rtol=1e-5)


def test_read_only_memmap_input_is_accepted_without_warnings(X, fast, tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, X)
    X_ro = np.load(path, mmap_mode="r")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vae = CompressionVAE(**dict(fast, max_steps=20, validation_interval=20), learning_rate="constant").fit(X_ro)
        np.testing.assert_array_equal(vae.transform(X_ro), vae.transform(X))


def test_score_improves_with_training(X, fast):
    short = CompressionVAE(**dict(fast, max_steps=5)).fit(X)
    longer = CompressionVAE(**dict(fast, max_steps=300)).fit(X)
    assert longer.score(X) > short.score(X) + 10


def test_sample_is_reproducible_and_decodes_prior_draws(X, fast):
    vae = CompressionVAE(**fast).fit(X)
    np.testing.assert_array_equal(vae.sample(4, random_state=3), vae.sample(4, random_state=3))
    assert not np.array_equal(vae.sample(4, random_state=3), vae.sample(4, random_state=4))
    for bad in (0, True, 2.0):  # a bool or a float is not a count of samples
        with pytest.raises(ValueError, match=f"n_samples must be a positive integer, got {bad!r}"):
            vae.sample(bad)


def test_importance_weighted_scores_tighten_the_elbo(digits, fast):
    X = digits[0][:400]
    vae = CompressionVAE(**dict(fast, max_steps=200)).fit(X)
    elbo = vae.score_samples(X)
    iwae = {k: vae.score_samples(X, n_importance_samples=k) for k in (16, 256)}
    assert iwae[256].shape == (400,) and np.isfinite(iwae[256]).all()
    assert elbo.mean() < iwae[16].mean() < iwae[256].mean()
    np.testing.assert_array_equal(vae.score_samples(X, n_importance_samples=16), iwae[16])  # fixed noise
    vae.set_params(eval_batch_size=7)  # other batches, other passes: the same bound per row
    np.testing.assert_allclose(vae.score_samples(X, n_importance_samples=16), iwae[16], rtol=1e-5)
    with pytest.raises(ValueError, match="n_importance_samples must be a positive integer, got 0"):
        vae.score_samples(X, n_importance_samples=0)


def test_a_parameter_set_after_the_fit_does_not_change_the_fitted_model(X, fast):
    from cvae import CompressionVAE

    vae = CompressionVAE(**fast).fit(X)
    Z = vae.transform(X[:5])
    vae.set_params(n_components=3)
    assert vae.inverse_transform(Z).shape == (5, 64)  # codes of the fitted width
    assert vae.sample(4, random_state=0).shape == (4, 64)
    assert vae.score_samples(X[:5]).shape == (5,)
    assert vae.get_feature_names_out().tolist() == ["compressionvae0", "compressionvae1"]


@pytest.fixture(scope="module")
def labelled_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split((X / 16).astype(np.float32), y, test_size=0.25, random_state=0)


def test_predict_transfers_labels_by_a_vote_of_the_nearest_labelled_rows(labelled_digits):
    X_train, X_test, y_train, y_test = labelled_digits
    partial = np.where(np.random.default_rng(0).random(len(y_train)) < 0.1, y_train, -1)
    vae = CompressionVAE(max_steps=300, random_state=0).fit(X_train, partial)
    proba = vae.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10) and np.allclose(proba.sum(axis=1), 1)
    reservoir = vae._checkpoint["labelled"]  # the labelled training rows the model keeps
    labelled = reservoir["labels"].numpy() >= 0
    assert labelled.all() and labelled.sum() == (partial >= 0).sum()  # every label kept, held-out rows' too
    k = round(np.sqrt(labelled.sum() / 10))  # the vote's size when labels are few
    alpha = vote_smoothing(*vae._labelled, k, 10, _random.rng("calibration"))
    assert np.isclose(proba.min(), alpha / 10 / (k + alpha)) and np.isclose(proba.max(), (k + alpha / 10) / (k + alpha))
    predicted = vae.predict(X_test)
    assert np.array_equal(predicted, vae.classes_[proba.argmax(axis=1)])
    assert np.mean(predicted == y_test) > 0.85  # 10 classes: chance 0.1
    # the vote, by hand: the k nearest labelled stored rows in the embedding
    Z_rows = vae.module_.embed(reservoir["rows"][labelled]).detach().numpy()
    Z = vae.transform(X_test[:20])
    nearest = np.argsort(((Z[:, None] - Z_rows[None]) ** 2).sum(axis=2), axis=1)[:, :k]
    codes = reservoir["labels"].numpy()[labelled][nearest]
    np.testing.assert_array_equal((codes[:, :, None] == np.arange(10)).sum(axis=1), vae._votes(X_test[:20], None)[0])


def test_predict_uses_a_classifier_trained_with_the_model(labelled_digits, tmp_path):
    import pickle

    import torch

    X_train, X_test, y_train, y_test = labelled_digits
    partial = np.where(np.random.default_rng(0).random(len(y_train)) < 0.1, y_train, -1)
    # no stored rows: the classifier needs none
    vae = CompressionVAE(max_steps=300, random_state=0, classifier_weight=1.0, store_rows=False,
                         logdir=tmp_path / "run").fit(X_train, partial)
    proba = vae.predict_proba(X_test)
    with torch.no_grad():
        expected = torch.softmax(vae.module_.classify(torch.from_numpy(X_test.astype(np.float32))), dim=1).numpy()
    np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-6)
    assert np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    predicted = vae.predict(X_test)
    assert np.array_equal(predicted, vae.classes_[proba.argmax(axis=1)])
    assert np.mean(predicted == y_test) > 0.85  # 10 classes: chance 0.1
    untrained = CompressionVAE(max_steps=1, random_state=0, classifier_weight=1.0).fit(X_train, partial)
    assert np.mean(untrained.predict(X_test) == y_test) < 0.5  # what training the classifier gave
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(vae)).predict_proba(X_test), proba)
    np.testing.assert_array_equal(CompressionVAE.load(tmp_path / "run").predict_proba(X_test), proba)


def test_label_transfer_chooses_the_vote_or_the_classifier_after_the_fit(X, fast):
    y = np.arange(len(X)) % 3
    vae = CompressionVAE(classifier_weight=1.0, **fast).fit(X, y)
    by_classifier = vae.predict_proba(X[:50])
    votes, k = vae._votes(X[:50], None)
    vae.set_params(label_transfer="vote")
    proba = vae.predict_proba(X[:50])
    assert not np.allclose(proba, by_classifier)
    np.testing.assert_array_equal(proba.argmax(axis=1), votes.argmax(axis=1))  # the vote, smoothed
    np.testing.assert_array_equal(vae.predict(X[:50]), vae.classes_[votes.argmax(axis=1)])
    vae.set_params(label_transfer="classifier")
    np.testing.assert_array_equal(vae.predict_proba(X[:50]), by_classifier)
    plain = CompressionVAE(label_transfer="classifier", **fast).fit(X, y)
    with pytest.raises(ValueError, match="label_transfer='classifier' needs the classifier.*classifier_weight above 0"):
        plain.predict(X[:5])
    plain.label_transfer = "nearest"
    with pytest.raises(ValueError, match="label_transfer must be one of 'auto', 'vote', 'classifier', got 'nearest'"):
        plain.predict_proba(X[:5])


def test_a_classifier_needs_classes(X, fast):
    with pytest.raises(ValueError, match="classifier_weight=1.0 trains a classifier of the classes of y.*fit with y"):
        CompressionVAE(classifier_weight=1.0, **fast).fit(X)
    with pytest.raises(ValueError, match="at least two classes in y; it has 1"):
        CompressionVAE(classifier_weight=1.0, **fast).fit(X, np.zeros(len(X), dtype=int))
    assert CompressionVAE(**fast).fit(X, np.arange(len(X)) % 2).module_.classifier is None  # the default: a vote


def test_predict_works_in_a_pipeline_and_a_grid_search(labelled_digits):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    X_train, X_test, y_train, y_test = labelled_digits
    pipeline = make_pipeline(MinMaxScaler(), CompressionVAE(max_steps=60, random_state=0))
    # the vote (0) and the classifier trained with the model (1)
    search = GridSearchCV(pipeline, {"compressionvae__classifier_weight": [0.0, 1.0]}, scoring="accuracy", cv=2)
    search.fit(X_train[:600], y_train[:600])
    assert search.best_params_["compressionvae__classifier_weight"] in (0.0, 1.0)
    assert np.all(search.cv_results_["mean_test_score"] > 0.3)  # both predict, through the pipeline
    assert search.score(X_test, y_test) > 0.5  # accuracy through the pipeline's predict
    assert search.predict(X_test[:3]).shape == (3,)


def test_predict_without_labels_or_stored_rows_says_why(X, fast):
    with pytest.raises(ValueError, match="fit with y"):
        CompressionVAE(**fast).fit(X).predict(X)
    y = np.arange(len(X)) % 3
    with pytest.raises(ValueError, match="store_rows=False"):
        CompressionVAE(store_rows=False, **fast).fit(X, y).predict(X)
