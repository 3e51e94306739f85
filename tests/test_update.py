"""partial_fit: one pass per call, state carried over, earlier rows kept in place after a fit."""

import numpy as np
import pytest

from cvae import CompressionVAE
from cvae.data.preparation import REPLAY_MIN_ROWS
from cvae.training.stored import LANDMARKS

FAST = dict(hidden_layer_sizes=(32, 16), random_state=0)


@pytest.fixture(scope="module")
def halves():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    return X[y < 5], X[y >= 5]


def test_each_call_is_one_pass_and_the_first_sets_the_model_up(halves, monkeypatch):
    import cvae.data.graph

    searched = []
    search = cvae.data.graph.neighbor_graph
    monkeypatch.setattr(cvae.data.graph, "neighbor_graph",
                        lambda A, k, **kw: searched.append(k) or search(A, k, **kw))
    old, new = halves
    vae = CompressionVAE(batch_size=128, **FAST)
    vae.partial_fit(old)
    assert vae.n_steps_ == int(np.ceil(len(old) / 128)) and len(vae.history_) == 1
    assert searched == [15]  # one graph: validation on the same rows takes each row's nearest from it
    assert np.allclose(vae.mean_, old.mean(axis=0), atol=1e-5)  # normalization from the first call's rows
    first_mean = vae.mean_.copy()
    stored = len(vae._checkpoint["reservoir"]["rows"])
    assert stored == len(old) < REPLAY_MIN_ROWS  # distinct rows, all kept: all are replayed beside new
    vae.partial_fit(new)
    assert vae.n_steps_ == int(np.ceil(len(old) / 128)) + int(np.ceil((len(new) + stored) / 128))
    assert len(vae.history_) == 2 and np.array_equal(vae.mean_, first_mean)
    vae.set_params(landmark_weight=0.0).partial_fit(new)  # no replay: one pass over new alone
    assert vae.n_steps_ == int(np.ceil(len(old) / 128)) + int(np.ceil((len(new) + stored) / 128)) + int(
        np.ceil(len(new) / 128))


def test_partial_fit_keeps_a_uniform_sample_of_its_rows_to_place_unseen_rows(halves, monkeypatch):
    import cvae.training.stored

    old, new = halves
    vae = CompressionVAE(**FAST).partial_fit(old)
    reservoir = vae._checkpoint["reservoir"]["rows"].numpy()
    np.testing.assert_array_equal(reservoir, old)  # all of the first call's rows: fewer than the cap
    monkeypatch.setattr(cvae.training.stored, "RESERVOIR_ROWS", 600)
    for _ in range(3):
        vae.partial_fit(new)
        reservoir = vae._checkpoint["reservoir"]["rows"].numpy()
        as_records = reservoir.view([("", reservoir.dtype)] * reservoir.shape[1]).ravel()
        from_old = np.isin(as_records, old.view([("", old.dtype)] * old.shape[1]).ravel())
        # distinct rows of both halves, about in proportion, however often new (and replayed old) rows come
        assert len(reservoir) == len(np.unique(as_records)) == 600 and 0.4 < from_old.mean() < 0.6
    # unseen rows are placed by the sample, embedded by the last weights, as after fit
    assert vae.embedding_.shape == (600, 2)
    placed, encoded = vae.transform(new[:20]), vae.set_params(placement="encoder").transform(new[:20])
    assert not np.allclose(placed, encoded)
    np.testing.assert_array_equal(vae.set_params(placement="neighbors").transform(new[:20]), placed)


def test_partial_fit_changes_the_model_and_keeps_the_last_weights(halves):
    old, new = halves
    vae = CompressionVAE(**FAST).partial_fit(old)
    before = vae.transform(new[:50])
    vae.partial_fit(new)
    assert not np.allclose(vae.transform(new[:50]), before)
    # the update's weights are kept, whatever the earlier validation losses were
    assert vae.best_validation_loss_ == vae.history_[-1]["validation_loss"]


def test_landmarks_keep_earlier_rows_in_place(halves):
    old, new = halves
    drifts = {}
    for weight in (1e-6, 1.0):  # both replay the fit's rows; only the second holds its landmarks
        vae = CompressionVAE(**FAST).fit(old)
        before = vae.set_params(placement="encoder").transform(old)
        vae.set_params(landmark_weight=weight)
        for _ in range(3):
            vae.partial_fit(new)
        drifts[weight] = float(np.linalg.norm(vae.transform(old) - before, axis=1).mean())
    spread = float(np.linalg.norm(before - before.mean(axis=0), axis=1).mean())
    assert drifts[1.0] < 0.5 * drifts[1e-6] and drifts[1.0] < 0.1 * spread


def test_an_update_takes_the_neighbor_weight_set_before_it(halves):
    old, new = halves
    updates = {}
    for weight in ("auto", 8.0):
        vae = CompressionVAE(**FAST).fit(old)
        assert vae.neighbor_weight_ == 0.4
        vae.set_params(neighbor_weight=weight).partial_fit(new)
        updates[weight] = vae.set_params(placement="encoder").transform(new[:50])
        assert vae.neighbor_weight_ == (0.4 if weight == "auto" else 8.0)  # "auto": the fit's weight
    assert not np.allclose(updates["auto"], updates[8.0])


def test_partial_fit_is_reproducible_and_continues_a_logdir(halves, tmp_path):
    old, new = halves
    a = CompressionVAE(logdir=tmp_path / "run", **FAST).fit(old).partial_fit(new)
    b = CompressionVAE(**FAST).fit(old).partial_fit(new)
    assert np.array_equal(a.transform(new), b.transform(new))
    fitted = CompressionVAE(**FAST).fit(old)
    landmarks = fitted._checkpoint["landmarks"]
    rows = landmarks["rows"].numpy()
    assert 0 < len(rows) <= LANDMARKS and rows.shape[1] == 64
    np.testing.assert_allclose(landmarks["embedding"].numpy(), fitted.set_params(placement="encoder").transform(rows),
                               atol=1e-5)
    assert np.array_equal(a._checkpoint["landmarks"]["rows"].numpy(), rows)  # partial_fit keeps the fit's
    loaded = CompressionVAE.load(tmp_path / "run")
    assert loaded.n_steps_ == a.n_steps_
    c = CompressionVAE(logdir=tmp_path / "run", **FAST).partial_fit(new)  # continues the run on disk, replaying
    from cvae.training.stored import replay_source

    replayed = min(len(replay_source(loaded._checkpoint, loaded.spec_)), max(len(new), REPLAY_MIN_ROWS))
    assert c.n_steps_ == a.n_steps_ + int(np.ceil((len(new) + replayed) / 512))


def test_partial_fit_refuses_other_features_and_damaged_landmarks(halves):
    old, new = halves
    vae = CompressionVAE(**FAST).fit(old)
    with pytest.raises(ValueError, match="X has 10 features, but CompressionVAE is expecting 64 features as input"):
        vae.partial_fit(new[:, :10])
    vae._checkpoint["landmarks"]["embedding"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="landmarks .* are damaged"):
        vae.partial_fit(new)
    vae = CompressionVAE(**FAST).fit(old)
    vae._checkpoint["reservoir"]["rows"][0, 0] = float("inf")
    with pytest.raises(ValueError, match="reservoir .* is damaged"):
        vae.partial_fit(new)


@pytest.fixture(scope="module")
def fitted_on_old(halves):
    return CompressionVAE(max_steps=100, **FAST).fit(halves[0])


def replayed_rows(vae, monkeypatch, call):
    """How many rows the fit behind ``call`` trained on (its X with any replayed rows)."""
    import cvae.training.update as update

    seen = []
    real = update.with_replay
    monkeypatch.setattr(update, "with_replay", lambda *a: seen.append(real(*a)) or seen[-1])
    call()
    return len(seen[-1][0])


def test_a_dataframe_or_a_list_replays_as_an_array_does(fitted_on_old, halves, monkeypatch):
    pd = pytest.importorskip("pandas")
    import copy

    new = halves[1][:50]
    counts = [replayed_rows(fitted_on_old, monkeypatch,
                            lambda rows=rows: copy.deepcopy(fitted_on_old).partial_fit(rows))
              for rows in (new, pd.DataFrame(new), new.tolist())]
    assert counts[0] > 50 and counts == [counts[0]] * 3  # every earlier row (fewer than REPLAY_MIN_ROWS)


def test_a_refused_update_leaves_the_model_as_it_was(fitted_on_old, halves):
    import copy

    vae = copy.deepcopy(fitted_on_old)
    expected = vae.transform(halves[1][:20])
    for bad in (halves[1][:, :10], np.zeros((0, 64), np.float32)):
        with pytest.raises(ValueError, match="10 features|0 sample"):
            vae.partial_fit(bad)
        assert vae.n_features_in_ == 64
    with pytest.raises(ValueError, match="X has 10 features"):
        vae.set_params(warm_start=True).fit(halves[1][:, :10])
    np.testing.assert_array_equal(vae.transform(halves[1][:20]), expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(y=np.zeros(49)), "y has 49 labels, but X has 50 rows"),
    (dict(sample_weight=np.ones(49)), r"sample_weight.shape == \(49,\), expected \(50,\)"),
])
def test_update_messages_speak_of_the_rows_given(fitted_on_old, halves, kwargs, message):
    import copy

    with pytest.raises(ValueError, match=message):
        copy.deepcopy(fitted_on_old).partial_fit(halves[1][:50], **kwargs)


def test_a_string_landmark_weight_gets_the_parameter_message(fitted_on_old, halves):
    import copy

    with pytest.raises(ValueError, match="'landmark_weight' parameter"):
        copy.deepcopy(fitted_on_old).set_params(landmark_weight="1").partial_fit(halves[1][:50])


def test_equal_weights_update_as_no_weights(fitted_on_old, halves):
    import copy

    new = halves[1][:50]
    plain = copy.deepcopy(fitted_on_old).partial_fit(new)
    weighted = copy.deepcopy(fitted_on_old).partial_fit(new, sample_weight=np.full(50, 3.0))
    np.testing.assert_allclose(weighted.transform(new), plain.transform(new), atol=1e-4)


def test_an_update_reads_labels_from_a_file(halves, tmp_path):
    old, new = halves
    vae = CompressionVAE(max_steps=60, **FAST).fit(old, np.arange(len(old)) % 2)
    np.savetxt(tmp_path / "labels.txt", np.arange(50) % 2, fmt="%d")
    vae.partial_fit(new[:50], str(tmp_path / "labels.txt"))
    assert vae.classes_.tolist() == [0, 1]


def test_a_fresh_estimator_on_a_saved_run_replays_as_a_loaded_one(halves, tmp_path, monkeypatch):
    old, new = halves
    CompressionVAE(max_steps=60, logdir=str(tmp_path / "run"), **FAST).fit(old)
    fresh = CompressionVAE(logdir=str(tmp_path / "run"), **FAST)
    n_fresh = replayed_rows(fresh, monkeypatch, lambda: fresh.partial_fit(new[:50]))
    CompressionVAE(max_steps=60, logdir=str(tmp_path / "again"), **FAST).fit(old)
    loaded = CompressionVAE.load(tmp_path / "again")
    n_loaded = replayed_rows(loaded, monkeypatch, lambda: loaded.partial_fit(new[:50]))
    assert n_fresh == n_loaded > 50
    np.testing.assert_allclose(fresh.transform(new[:20]), loaded.transform(new[:20]), atol=1e-5)


def test_an_update_keeps_training_the_classifier_on_the_stored_labelled_rows(halves, monkeypatch):
    import torch

    import cvae.training.run as run

    made = []

    class Recording(run.ClassifierLoss):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    old, new = halves
    y = np.where(np.arange(len(old)) % 5 == 0, np.arange(len(old)) % 3, -1)  # a fifth labelled, 3 classes
    vae = CompressionVAE(max_steps=60, classifier_weight=1.0, **FAST).fit(old, y)
    monkeypatch.setattr(run, "ClassifierLoss", Recording)  # the update's, not the fit's
    head = {k: v.clone() for k, v in vae.module_.classifier.state_dict().items()}
    vae.partial_fit(new)  # no labels: the encoder moves, and the stored labelled rows keep the classifier in step
    assert len(made) == 1 and len(made[0].indices) == (y >= 0).sum()
    assert np.array_equal(made[0].codes.numpy(), y[y >= 0][np.argsort(np.flatnonzero(y >= 0), kind="stable")])
    assert any(not torch.equal(v, head[k]) for k, v in vae.module_.classifier.state_dict().items())
    y_new = np.where(np.arange(len(new)) % 4 == 0, np.arange(len(new)) % 3, -1)
    vae.partial_fit(new, y_new)  # labels of its own: one term over them and the stored ones, not two
    assert len(made) == 2 and made[1].weight == made[0].weight == 1.0 * old.shape[1]
    stored = len(made[0].indices)
    assert len(made[1].indices) == stored + (y_new >= 0).sum()
    assert np.array_equal(made[1].codes[stored:].numpy(), y_new[y_new >= 0])
    CompressionVAE(max_steps=60, **FAST).fit(old, y).partial_fit(new)  # a model without a classifier: none
    assert len(made) == 2
