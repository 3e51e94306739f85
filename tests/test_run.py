"""One training run (cvae.training.run and .stored): what a fitted model keeps, what its graph costs, how
it ends."""

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

import cvae.data.preparation
from cvae import CompressionVAE
from cvae.training import LogDir

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ROW_PARTS = ("reservoir", "landmarks", "reference")


def test_store_rows_false_keeps_no_training_data_anywhere(X, fast, tmp_path):
    kept = CompressionVAE(**fast).fit(X)
    bare = CompressionVAE(store_rows=False, logdir=tmp_path / "run", **fast).fit(X)
    assert all(kept._checkpoint.get(part) is not None for part in ROW_PARTS)
    assert all(bare._checkpoint.get(part) is None for part in ROW_PARTS)
    on_disk = torch.load(LogDir(tmp_path / "run").file(LogDir.CHECKPOINT), weights_only=True)
    assert all(on_disk.get(part) is None for part in ROW_PARTS)
    # the same model (same seed), without the rows: the pickle shrinks by them
    np.testing.assert_array_equal(bare.set_params(placement="encoder").transform(X),
                                  kept.set_params(placement="encoder").transform(X))
    assert len(pickle.dumps(bare)) < len(pickle.dumps(kept)) - X[:len(X) * 9 // 10].nbytes
    # placement "auto" is the encoder's map without stored rows
    bare.set_params(placement="auto")
    assert not hasattr(bare, "embedding_") and bare._reference is None
    np.testing.assert_array_equal(bare.transform(X[:20]), bare.set_params(placement="encoder").transform(X[:20]))


def test_store_rows_false_updates_learn_new_rows_alone(X, fast):
    vae = CompressionVAE(store_rows=False, **dict(fast, batch_size=100)).fit(X[:200])
    steps = vae.n_steps_
    vae.partial_fit(X[200:])  # no replay: one pass over the 200 new rows
    assert vae.n_steps_ == steps + 2
    assert all(vae._checkpoint.get(part) is None for part in ROW_PARTS)
    # a model that kept rows drops them once an update is told not to keep any
    kept = CompressionVAE(**fast).fit(X[:200])
    kept.set_params(store_rows=False).partial_fit(X[200:])
    assert all(kept._checkpoint.get(part) is None for part in ROW_PARTS)


def test_the_neighbour_placement_without_stored_rows_is_refused(X, fast):
    with pytest.raises(ValueError, match="placement='neighbors' places rows by the training rows .* store_rows=False"):
        CompressionVAE(placement="neighbors", store_rows=False, **fast).fit(X)


def test_the_graph_follows_the_step_budget_not_the_data(X, fast, monkeypatch, tmp_path):
    searched = []
    graph = cvae.data.preparation._graph
    monkeypatch.setattr(cvae.data.preparation, "_graph",
                        lambda rows, *a, **kw: searched.append((a[1], rows.indices)) or graph(rows, *a, **kw))
    monkeypatch.setattr(cvae.data.preparation, "GRAPH_MIN_ROWS", 30)
    params = dict(fast, max_steps=5, batch_size=20, logdir=tmp_path / "run")
    vae = CompressionVAE(**params).fit(X)
    # 5 steps of 20 rows: 100 of the 360 training rows, and 30 of the 40 validation rows
    assert [(k, len(rows)) for k, rows in searched] == [(15, 100), (1, 30)]
    with np.load(LogDir(tmp_path / "run").file(LogDir.NEIGHBORS)) as saved:
        assert saved["graph"].shape == (100, 15)
    assert vae.embedding_.shape == (130, 2)  # the placement keeps the rows it trained and validated on
    # a run continued with a larger budget trains on more rows, those of the first budget among them
    CompressionVAE(**dict(params, max_steps=8, warm_start=True)).fit(X)
    assert [(k, len(rows)) for k, rows in searched[2:]] == [(15, 160), (1, 30)]
    assert np.isin(searched[0][1], searched[2][1]).all()
    np.testing.assert_array_equal(searched[1][1], searched[3][1])


def test_a_fit_within_its_budget_searches_all_its_rows(X, fast, monkeypatch):
    searched = []
    graph = cvae.data.preparation._graph
    monkeypatch.setattr(cvae.data.preparation, "_graph",
                        lambda rows, *a, **kw: searched.append(len(rows)) or graph(rows, *a, **kw))
    monkeypatch.setattr(cvae.data.preparation, "GRAPH_MIN_ROWS", 30)
    CompressionVAE(**dict(fast, max_steps=18, batch_size=20)).fit(X)  # 360 rows visited: all of them
    assert searched == [360, 30]
    searched.clear()
    monkeypatch.setattr(cvae.data.preparation, "GRAPH_MAX_ROWS", 50)
    CompressionVAE(**dict(fast, max_steps=18, batch_size=20)).fit(X)  # at most GRAPH_MAX_ROWS, whatever the budget
    assert searched == [50, 30]


def test_a_fit_that_never_validates_finitely_warns(X, fast):
    with pytest.warns(ConvergenceWarning, match="No validation loss was finite"):
        vae = CompressionVAE(**dict(fast, learning_rate_init=1e30)).fit(X)
    assert vae.stop_reason_ == "diverged" and vae.best_validation_loss_ == float("inf")


@pytest.mark.parametrize(
    "reason, best, category, message",
    [
        ("interrupted", 1.0, UserWarning, "Training interrupted at step 7"),
        ("diverged", 1.0, RuntimeWarning, "Training diverged .* at step 7"),
        ("diverged", float("inf"), ConvergenceWarning, "No validation loss was finite in 7 steps"),
        ("max_steps", float("inf"), ConvergenceWarning, "No validation loss was finite"),
        ("max_steps", 1.0, ConvergenceWarning, "Reached max_steps=9"),
    ],
)
def test_each_way_a_fit_ends_badly_is_warned(reason, best, category, message):
    from cvae.training.plan import TrainingPlan
    from cvae.training.run import warn_on_stop

    params = CompressionVAE(learning_rate="adaptive", learning_rate_min=1e-5).get_params()
    params = TrainingPlan.from_params(params, max_steps=9, neighbor_weight=0.4)
    with pytest.warns(category, match=message):
        warn_on_stop(params, {"stop_reason": reason, "step": 7, "best_loss": best})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_on_stop(params, {"stop_reason": "converged", "step": 7, "best_loss": 1.0})


def test_numpy_scalar_parameters_are_saved_with_the_run(tmp_path, X, fast):
    params = dict(fast, max_steps=np.int64(20), random_state=np.int64(3), n_components=np.int64(2),
                  learning_rate_init=np.float32(1e-3))
    vae = CompressionVAE(logdir=tmp_path / "run", **params).fit(X[:200])
    saved = json.loads((tmp_path / "run" / "params.json").read_text())["params"]
    assert saved["max_steps"] == 20 and saved["random_state"] == 3 and vae.n_steps_ == 20
    np.testing.assert_array_equal(CompressionVAE.load(tmp_path / "run").transform(X[:5]), vae.transform(X[:5]))


def test_the_plan_holds_the_resolved_values_and_plain_numbers():
    from cvae.training.plan import TrainingPlan

    params = CompressionVAE(batch_size=np.int64(64), learning_rate_init=np.float32(1e-3)).get_params()
    plan = TrainingPlan.from_params(params, max_steps=120, neighbor_weight=0.4)
    assert (plan.max_steps, plan.neighbor_weight, plan.batch_size) == (120, 0.4, 64)
    assert type(plan.batch_size) is int and type(plan.learning_rate_init) is float  # NumPy scalars as numbers
    assert plan.resolved_values() == {"max_steps": 120, "neighbor_weight": 0.4}  # what the checkpoint records
    with pytest.raises(Exception):  # frozen: nothing below the estimator changes how a run trains
        plan.max_steps = 1


def test_a_sampled_graph_keeps_each_rows_label_and_weight_and_streams(X, digits, fast, monkeypatch, tmp_path):
    searched = []
    graph = cvae.data.preparation._graph
    monkeypatch.setattr(cvae.data.preparation, "_graph",
                        lambda rows, *a, **kw: searched.append(rows) or graph(rows, *a, **kw))
    monkeypatch.setattr(cvae.data.preparation, "GRAPH_MIN_ROWS", 30)
    y, weights = digits[1][:400], np.linspace(0.5, 2.0, 400)
    vae = CompressionVAE(**dict(fast, max_steps=5, batch_size=20)).fit(X, y, sample_weight=weights)
    train = searched[0]
    assert len(train) == 100 and vae.classes_.tolist() == list(range(10))
    np.testing.assert_array_equal(train.labels, y[train.indices])  # each sampled row keeps its own label
    assert train.weights is not None and np.corrcoef(train.weights, weights[train.indices])[0, 1] > 0.999
    np.save(tmp_path / "X.npy", X)  # rows streamed from a file sample the same way
    searched.clear()
    streamed = CompressionVAE(**dict(fast, max_steps=5, batch_size=20)).fit(tmp_path / "X.npy")
    assert [len(rows) for rows in searched] == [100, 30] and np.isfinite(streamed.transform(X[:5])).all()
