"""The neighbour graph of a fit's rows (cvae.data.graph): the rows a budget's graph is
searched among, kept for a continued run, and labels folded in."""

import numpy as np
import pytest

import cvae.data.graph
from cvae import CompressionVAE
from cvae.data.graph import labels_folded
from cvae.training import LogDir

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def test_labels_fold_into_the_graph_only_where_they_are_given():
    graph = np.array([[1, 2], [0, 3], [3, 0], [2, 1]])
    assert labels_folded(graph, None, 1.0, 0) is graph
    assert labels_folded(graph, np.full(4, -1), 1.0, 0) is graph
    assert labels_folded(graph, np.array([0, 1, 1, 0]), 0.0, 0) is graph
    folded = labels_folded(graph, np.array([0, 0, 1, 1]), 1.0, 0)
    # at weight 1 every neighbour of another class is replaced by one of the row's class
    codes = np.array([0, 0, 1, 1])
    assert (codes[folded] == codes[:, None]).all()
    np.testing.assert_array_equal(folded, labels_folded(graph, codes, 1.0, 0))  # seeded


def test_the_graph_follows_the_step_budget_not_the_data(X, fast, monkeypatch, tmp_path):
    searched = []
    graph = cvae.data.graph.rows_graph
    monkeypatch.setattr(cvae.data.graph, "rows_graph",
                        lambda rows, *a, **kw: searched.append((a[1], rows.indices)) or graph(rows, *a, **kw))
    monkeypatch.setattr(cvae.data.graph, "GRAPH_MIN_ROWS", 30)
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
    graph = cvae.data.graph.rows_graph
    monkeypatch.setattr(cvae.data.graph, "rows_graph",
                        lambda rows, *a, **kw: searched.append(len(rows)) or graph(rows, *a, **kw))
    monkeypatch.setattr(cvae.data.graph, "GRAPH_MIN_ROWS", 30)
    CompressionVAE(**dict(fast, max_steps=18, batch_size=20)).fit(X)  # 360 rows visited: all of them
    assert searched == [360, 30]
    searched.clear()
    monkeypatch.setattr(cvae.data.graph, "GRAPH_MAX_ROWS", 50)
    CompressionVAE(**dict(fast, max_steps=18, batch_size=20)).fit(X)  # at most GRAPH_MAX_ROWS, whatever the budget
    assert searched == [50, 30]


def test_a_sampled_graph_keeps_each_rows_label_and_weight_and_streams(X, digits, fast, monkeypatch, tmp_path):
    searched = []
    graph = cvae.data.graph.rows_graph
    monkeypatch.setattr(cvae.data.graph, "rows_graph",
                        lambda rows, *a, **kw: searched.append(rows) or graph(rows, *a, **kw))
    monkeypatch.setattr(cvae.data.graph, "GRAPH_MIN_ROWS", 30)
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
