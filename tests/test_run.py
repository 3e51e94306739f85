"""One training run (cvae.training.run): what a fitted model keeps, and what its graph costs."""

import pickle

import numpy as np
import pytest
import torch

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
