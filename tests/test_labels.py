"""fit(X, y): labels checked, spread over the neighbour graph and folded into it."""

import pickle

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from cvae import CompressionVAE
from cvae.data.labels import check_labels
from cvae.neighbors.labels import labelled_graph, spread_labels

FAST = dict(hidden_layer_sizes=(32,), max_steps=150, random_state=0)


def overlapping_classes(n=600, seed=0):
    """Two classes that one of 12 features separates; the other 11 are noise, which
    dominates the distances, so the data's neighbours mix the classes."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    X = rng.normal(size=(n, 12)).astype(np.float32)
    X[:, 0] = 1.5 * y + rng.normal(scale=0.3, size=n)
    return X, y


def purity(Z, y, k=10):
    """Share of each row's k nearest rows in ``Z`` that have its label."""
    neighbors = KNeighborsClassifier(k).fit(Z, y).kneighbors(Z, k + 1, return_distance=False)[:, 1:]
    return float(np.mean(y[neighbors] == y[:, None]))


def test_check_labels_codes_integer_string_and_float_labels():
    classes, codes = check_labels([3, -1, 7, 3], 4)
    assert classes.tolist() == [3, 7] and codes.tolist() == [0, -1, 1, 0]
    classes, codes = check_labels(np.array(["b", None, "a"], dtype=object), 3)
    assert classes.tolist() == ["a", "b"] and codes.tolist() == [1, -1, 0]
    classes, codes = check_labels(np.array([1.0, 2.0, -1.0]), 3)
    assert classes.tolist() == [1, 2] and codes.tolist() == [0, 1, -1]
    classes, codes = check_labels(np.array([[5], [6]]), 2)  # a column vector, as a DataFrame column gives
    assert codes.tolist() == [0, 1]


@pytest.mark.parametrize("y, n, message", [
    ([0, 1], 3, "y has 2 labels, but X has 3 rows"),
    (np.zeros((3, 2)), 3, r"1-D array; got shape \(3, 2\)"),
    ([0.5, 1.0, 2.0], 3, "not whole numbers: CompressionVAE takes class labels"),
    ([np.inf, 1.0, 2.0], 3, "not whole numbers"),  # NaN marks an unlabelled row; infinity is no label
    ([-1, -1], 2, "every row unlabelled"),
    (np.array([1 + 2j, 0j]), 2, "class labels must be integers or strings"),
])
def test_check_labels_refuses_bad_labels(y, n, message):
    with pytest.raises(ValueError, match=message):
        check_labels(y, n)


def test_check_labels_refuses_classes_the_continued_run_lacks():
    with pytest.raises(ValueError, match="classes the run being continued did not have: 9"):
        check_labels([0, 9], 2, classes=np.array([0, 1]))


def test_spread_labels_fills_each_clique_from_its_one_labelled_row():
    # rows 0-4 and 5-9 are two cliques; rows 0 and 9 carry the labels
    graph = np.array([[j for j in range(5 * (i // 5), 5 * (i // 5) + 5) if j != i] for i in range(10)])
    codes = np.full(10, -1)
    codes[0], codes[9] = 0, 1
    assert spread_labels(graph, codes, 2).tolist() == [0] * 5 + [1] * 5


def test_spread_labels_leaves_unclear_rows_unlabelled():
    graph = np.array([[1, 2], [0, 2], [0, 1]])  # one clique, two classes: no class is clear for row 2
    assert spread_labels(graph, np.array([0, 1, -1]), 2).tolist() == [0, 1, -1]


def test_labelled_graph_replaces_other_class_neighbours_in_proportion():
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1], 500)
    graph = rng.integers(0, 1000, size=(1000, 10))
    assert np.array_equal(labelled_graph(graph, codes, 0.0, np.random.default_rng(0)), graph)
    crossing = codes[graph] != codes[:, None]
    for weight in (0.5, 1.0):
        folded = labelled_graph(graph, codes, weight, np.random.default_rng(0))
        kept = codes[folded] != codes[:, None]
        assert kept.sum() / crossing.sum() == pytest.approx(1 - weight, abs=0.03)
        assert np.array_equal(folded[~crossing], graph[~crossing])  # own-class neighbours stay in place
        replaced = folded != graph
        assert np.all(codes[folded[replaced]] == np.broadcast_to(codes[:, None], graph.shape)[replaced])
    lonely = np.array([[1, 2], [0, 2], [0, 1], [2, 2]])  # row 0, of class 0, has only class-1 neighbours
    folded = labelled_graph(lonely, np.array([0, 1, 1, 0]), 1.0, np.random.default_rng(0))
    assert folded[0].tolist() == [3, 3]  # drawn from its class (rows 0 and 3), never itself
    unlabelled = np.where(np.arange(1000) % 2 == 0, -1, codes)
    folded = labelled_graph(graph, unlabelled, 1.0, np.random.default_rng(0))
    touches_unlabelled = (unlabelled[:, None] == -1) | (unlabelled[graph] == -1)
    assert np.array_equal(folded[touches_unlabelled], graph[touches_unlabelled])


def test_labels_part_the_classes_and_target_weight_zero_ignores_them():
    X, y = overlapping_classes()
    plain = CompressionVAE(**FAST).fit(X)
    supervised = CompressionVAE(target_weight=1.0, **FAST).fit(X, y)
    ignored = CompressionVAE(target_weight=0.0, **FAST).fit(X, y)
    assert purity(plain.embedding_, y) < 0.6  # the data alone: about as mixed as chance (0.5)
    assert purity(supervised.embedding_, y) > purity(plain.embedding_, y) + 0.2
    assert np.array_equal(ignored.embedding_, plain.embedding_)  # bit for bit: weight 0 is the data alone
    assert supervised.classes_.tolist() == [0, 1] and ignored.classes_.tolist() == [0, 1]
    assert not hasattr(plain, "classes_")


def test_labelled_rows_trade_unlabelled_neighbours_for_labelled_rows_of_their_class():
    rng = np.random.default_rng(1)
    codes = np.where(np.arange(400) < 40, np.arange(400) % 2, -1)  # rows 0-39 labelled, alternate classes
    graph = rng.integers(40, 400, size=(400, 10))  # every neighbour unlabelled
    folded = labelled_graph(graph, codes, 1.0, np.random.default_rng(0), anchors=codes != -1)
    changed = folded != graph
    assert not changed[40:].any()  # unlabelled rows keep their neighbours
    assert changed[:40].mean() == pytest.approx(0.5, abs=0.08)  # target_weight / 2 of a labelled row's
    assert np.all(codes[folded[:40][changed[:40]]] == np.repeat(codes[:40], changed[:40].sum(axis=1)))


def test_classes_survive_pickle_load_and_refuse_new_classes_on_warm_start(tmp_path):
    X, y = overlapping_classes(300)
    labels = np.where(y == 0, "cat", "dog").astype(object)
    vae = CompressionVAE(logdir=tmp_path / "run", **FAST).fit(X, labels)
    assert vae.classes_.tolist() == ["cat", "dog"]
    assert pickle.loads(pickle.dumps(vae)).classes_.tolist() == ["cat", "dog"]
    loaded = CompressionVAE.load(tmp_path / "run")
    assert loaded.classes_.tolist() == ["cat", "dog"]
    loaded.set_params(warm_start=True, max_steps=160)
    with pytest.raises(ValueError, match="classes the run being continued did not have: 'eel'"):
        loaded.fit(X, np.where(y == 0, "cat", "eel").astype(object))
    loaded.fit(X, labels)  # the same classes continue
    assert loaded.n_steps_ == 160 and loaded.classes_.tolist() == ["cat", "dog"]


def test_labels_from_a_npy_file_and_warning_without_the_neighbour_term(tmp_path):
    X, y = overlapping_classes(200)
    np.save(tmp_path / "y.npy", y)
    from_file = CompressionVAE(**FAST).fit(X, str(tmp_path / "y.npy"))
    in_memory = CompressionVAE(**FAST).fit(X, y)
    assert np.array_equal(from_file.embedding_, in_memory.embedding_)
    with pytest.raises(FileNotFoundError, match="y.csv"):
        CompressionVAE(**FAST).fit(X, str(tmp_path / "y.csv"))
    with pytest.warns(UserWarning, match="y is not used: labels shape the embedding through the neighbour term"):
        CompressionVAE(neighbor_weight=0, **FAST).fit(X, y)


def test_pipeline_passes_y_and_grid_search_tunes_target_weight():
    X, y = overlapping_classes(300)
    pipeline = make_pipeline(CompressionVAE(**FAST), KNeighborsClassifier(10))
    search = GridSearchCV(pipeline, {"compressionvae__target_weight": [0.0, 1.0]}, cv=2).fit(X, y)
    assert search.best_estimator_[0].classes_.tolist() == [0, 1]  # y reached the embedding's fit
    # the labels part the classes that the data's neighbours mix: the search picks them
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"compressionvae__target_weight": 1.0} and scores[1] > scores[0] + 0.05


def test_cli_fit_takes_labels_from_a_file_and_an_h5ad_obs_column(tmp_path, capsys):
    from cvae.cli import main

    X, y = overlapping_classes(200)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    options = ["--hidden-layer-sizes", "32", "--max-steps", "150", "--seed", "0", "--quiet"]
    assert main(["fit", str(tmp_path / "X.npy"), "--logdir", str(tmp_path / "run"), "--labels",
                 str(tmp_path / "y.npy"), *options]) == 0
    fitted = CompressionVAE.load(tmp_path / "run")
    # a small .npy is read into memory, where the neighbour term (and so the labels) applies
    assert fitted.classes_.tolist() == [0, 1] and fitted.neighbor_weight_ == 0.4
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    obs = pd.DataFrame({"kind": pd.Categorical(np.where(y == 0, "a", "b"))}, index=[str(i) for i in range(len(y))])
    obs.loc[obs.index[:20], "kind"] = None  # missing: unlabelled rows
    anndata.AnnData(X, obs=obs).write_h5ad(tmp_path / "X.h5ad")
    capsys.readouterr()
    assert main(["fit", str(tmp_path / "X.h5ad"), "--logdir", str(tmp_path / "bad"), "--labels", "nope", *options]) == 2
    assert "y='nope' names no column of the AnnData's obs; its columns: kind." in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "X.h5ad"), "--logdir", str(tmp_path / "h5ad"), "--labels", "kind",
                 *options]) == 0
    assert CompressionVAE.load(tmp_path / "h5ad").classes_.tolist() == ["a", "b"]


@pytest.mark.parametrize("classes", [[], "ab", [1, 1], [2, 1], [0, "a"], [True, False], [0.5]])
def test_damaged_classes_in_a_checkpoint_are_named(classes):
    from cvae.data.labels import check_saved_classes

    with pytest.raises(ValueError, match="Cannot read checkpoint run/checkpoint.pt: its classes are damaged"):
        check_saved_classes(classes, "checkpoint run/checkpoint.pt")
    assert check_saved_classes(["a", "b"]).tolist() == ["a", "b"] and check_saved_classes([0, 3]).tolist() == [0, 3]


@pytest.mark.parametrize("y, classes", [
    (np.array([0, 1, -1, 2], dtype=object), [0, 1, 2]),  # an object array of integers
    ([0, None, -1, 1], [0, 1]),  # a list mixing None and -1
    (np.array(["a", "b", "-1", "a"]), ["a", "b"]),  # a text file of string classes
    ([0.0, float("nan"), 1.0, 2.0], [0, 1, 2]),  # float NaN
    (np.array(["a", "nan", "b", ""]), ["a", "b"]),  # "nan" and empty lines in a file
])
def test_missing_labels_are_unlabelled_whatever_their_type(y, classes):
    from cvae.data.labels import check_labels

    found, codes = check_labels(y, 4)
    assert found.tolist() == classes  # -1 and NaN never become a class
    assert (codes == -1).sum() == sum(v is None or v in (-1, "-1", "nan", "") or v != v for v in list(y))


def test_pandas_missing_labels_are_unlabelled():
    pd = pytest.importorskip("pandas")
    from cvae.data.labels import check_labels

    for y in (pd.Series([0, 1, -1, 2], dtype=object), pd.Series([0, pd.NA, 1, 2], dtype="Int64"),
              pd.Series(pd.Categorical(["a", None, "b", "a"]))):
        found, codes = check_labels(y, 4)
        assert -1 not in found.tolist() and (codes == -1).sum() == 1
