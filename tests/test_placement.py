"""The defaults (neighbour term, pass budget) and placing unseen rows by their nearest training rows."""

import pickle

import numpy as np
import pytest
import torch

from cvae import CompressionVAE
from cvae.neighbors.placement import NeighborReference


@pytest.fixture(scope="module")
def split(digits):
    X = digits[0] / 16.0
    return X[:600], X[600:700]


@pytest.fixture(scope="module")
def placed(split):
    return CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=60, random_state=0).fit(split[0])


def test_defaults_are_the_neighbour_embedding_placed_by_neighbours(split):
    params = CompressionVAE().get_params()
    assert (params["neighbor_weight"], params["neighbor_objective"], params["placement"], params["precision"]) == (
        "auto", "tsne", "auto", "auto")


def test_a_1000_row_fit_stops_within_its_pass_budget(digits):
    vae = CompressionVAE(hidden_layer_sizes=(32, 16), random_state=0).fit(digits[0][:1000] / 16.0)
    # 900 training rows: 40 * sqrt(10,000 / 900) = 133.3 passes at batch 512 are 235 steps
    assert vae.neighbor_weight_ == 0.4 and vae.max_steps_ == 235 and vae.n_steps_ == 235
    assert vae.n_steps_ * 512 / 900 < 134
    assert vae.get_params()["max_steps"] == "auto"


def test_rows_read_from_a_file_train_the_neighbour_embedding_placed_by_the_encoder(split, tmp_path):
    np.save(tmp_path / "X.npy", split[0])
    params = dict(hidden_layer_sizes=(32, 16), max_steps=20, random_state=0)
    vae = CompressionVAE(**params).fit(tmp_path / "X.npy")
    assert vae.neighbor_weight_ == 0.4 and vae._reference is None
    # the same graph and batches as the rows in memory: the same model, bit for bit
    in_memory = CompressionVAE(placement="encoder", **params).fit(split[0])
    np.testing.assert_array_equal(vae.transform(split[1]), in_memory.transform(split[1]))
    kept = CompressionVAE(placement="neighbors", **params).fit(tmp_path / "X.npy")
    np.testing.assert_array_equal(kept.transform(split[1]), CompressionVAE(**params).fit(split[0]).transform(split[1]))


def test_the_original_interface_keeps_the_plain_vae(tmp_path):
    from cvae import cvae

    model = cvae.CompressionVAE(np.random.default_rng(0).random((50, 4), dtype=np.float32), logdir=tmp_path / "run")
    assert model.estimator.neighbor_weight == 0.0 and model.estimator.precision == "float32"


def test_training_rows_keep_their_encoder_embedding(placed, split):
    X = split[0]
    encoder = placed.set_params(placement="encoder").transform(X)
    np.testing.assert_array_equal(placed.set_params(placement="auto").transform(X), encoder)


def test_an_unseen_row_is_placed_among_its_nearest_training_rows(placed, split):
    X, X_new = split
    Z_train = placed.transform(X)
    Z_new = placed.transform(X_new)
    assert Z_new.shape == (100, 2) and np.isfinite(Z_new).all()
    # each unseen row lies nearer its data-space neighbours' embedding than the typical distance between rows
    d = ((X_new[:, None] - X[None]) ** 2).sum(-1)
    neighbors = np.argsort(d, axis=1)[:, :15]
    to_neighbors = np.linalg.norm(Z_new - np.median(Z_train[neighbors], axis=1), axis=1)
    spread = np.linalg.norm(Z_train - Z_train.mean(0), axis=1).mean()
    assert np.median(to_neighbors) < 0.25 * spread
    # and differs from what the encoder gives it
    assert not np.allclose(Z_new, placed.set_params(placement="encoder").transform(X_new))
    placed.set_params(placement="auto")


def test_placement_of_a_row_does_not_depend_on_the_other_rows(placed, split):
    X_new = split[1]
    whole = placed.transform(X_new)
    np.testing.assert_allclose(placed.set_params(eval_batch_size=7).transform(X_new), whole, atol=1e-6)
    np.testing.assert_allclose(placed.transform(X_new[::-1])[::-1], whole, atol=1e-6)
    placed.set_params(eval_batch_size=4096)


def test_the_reference_survives_pickling_and_the_log_directory(split, tmp_path):
    X, X_new = split
    vae = CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=30, logdir=tmp_path / "run", random_state=0).fit(X)
    Z = vae.transform(X_new)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(vae)).transform(X_new), Z)
    np.testing.assert_array_equal(CompressionVAE.load(tmp_path / "run").transform(X_new), Z)


def test_a_model_without_reference_says_how_to_place_rows(split):
    vae = CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=10, placement="encoder", random_state=0).fit(split[0])
    assert vae._reference is None
    with pytest.raises(ValueError, match=r"placement='neighbors' needs the training rows, which this model did not"):
        vae.set_params(placement="neighbors").transform(split[1])
    with pytest.raises(ValueError, match=r"placement must be one of 'auto', 'encoder', 'neighbors', got 'knn'"):
        vae.set_params(placement="knn").transform(split[1])
    with pytest.raises(ValueError, match=r"n_neighbors must be a positive integer, got 0"):
        vae.set_params(placement="auto", n_neighbors=0).transform(split[1])


def _shared_neighbours(Z_new, Z_train, X_new, X_train, k=15):
    """Mean share of each new row's k nearest training rows in the data that are among its k
    nearest in the embedding."""
    from sklearn.neighbors import NearestNeighbors

    in_data = NearestNeighbors(n_neighbors=k).fit(X_train).kneighbors(X_new, return_distance=False)
    in_embedding = NearestNeighbors(n_neighbors=k).fit(Z_train).kneighbors(Z_new, return_distance=False)
    return np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(in_data, in_embedding)])


def test_the_plain_vae_can_keep_a_reference(split):
    X, X_new = split
    vae = CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=10, neighbor_weight=0, placement="neighbors",
                         random_state=0).fit(X)
    # every row of X (training and held-out) is kept with its encoder embedding, and keeps it in transform
    encoded = vae.set_params(placement="encoder").transform(X)
    np.testing.assert_allclose(vae.embedding_, encoded, atol=1e-5)
    np.testing.assert_array_equal(vae.set_params(placement="neighbors").transform(X), vae.embedding_)
    # unseen rows land among their nearest training rows, as the encoder's map of this model does not
    placed, mapped = vae.transform(X_new), vae.set_params(placement="encoder").transform(X_new)
    assert _shared_neighbours(placed, encoded, X_new, X) > 1.5 * _shared_neighbours(mapped, encoded, X_new, X)


def test_wide_rows_are_searched_among_principal_components():
    rng = np.random.default_rng(0)
    X = rng.random((300, 120), dtype=np.float32)
    vae = CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=10, random_state=0).fit(X)
    assert vae._reference.rows.shape == (300, 50) and vae._reference.components.shape == (50, 120)
    np.testing.assert_array_equal(vae.transform(X[:20]), vae.set_params(placement="encoder").transform(X[:20]))


def test_a_damaged_reference_is_refused_with_its_place():
    good = {"rows": torch.zeros(4, 3), "embedding": torch.zeros(4, 2), "mean": None, "components": None}
    assert len(NeighborReference.from_state(good, 2, "here").rows) == 4
    bad = dict(good, embedding=torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="Cannot read the neighbour reference in here: its arrays are damaged"):
        NeighborReference.from_state(bad, 2, "here")
    with pytest.raises(ValueError, match="its arrays are damaged"):
        NeighborReference.from_state(dict(good, embedding=torch.zeros(4, 3)), 2, "here")
    with pytest.raises(ValueError, match="it is incomplete"):
        NeighborReference.from_state({"rows": torch.zeros(4, 3)}, 2, "here")


def test_the_grid_sums_over_all_training_rows_match_the_exact_sums():
    from cvae.neighbors.placement import _GridField, _SampledField

    torch.manual_seed(0)
    points = torch.randn(3000, 2) * 6
    z = torch.randn(200, 2) * 5
    exact_total, exact_repulsion = _SampledField(points, len(points))(z)  # the sample is every row: exact
    total, repulsion = _GridField(points)(z)
    assert total.shape == exact_total.shape == (200, 1) and repulsion.shape == exact_repulsion.shape == (200, 2)
    assert torch.allclose(total, exact_total, rtol=3e-3)
    # the repulsion enters the gradient divided by the total: its error is small beside that
    assert ((repulsion - exact_repulsion).norm(dim=1) <= 0.005 * exact_total[:, 0]).all()


def test_a_wider_embedding_is_placed_against_a_sample_of_training_rows(split):
    from cvae.neighbors.placement import KERNEL_SCALE, REFINE_NEGATIVES, _SampledField

    X, X_new = split
    vae = CompressionVAE(3, hidden_layer_sizes=(32, 16), max_steps=30, random_state=0).fit(X)
    Z = vae.transform(X_new)
    assert Z.shape == (100, 3) and np.isfinite(Z).all()
    np.testing.assert_array_equal(vae.transform(X[:10]), vae.embedding_[:10])
    # no grid beyond 2-D: the repulsion is estimated from a fixed sample of the training rows
    field = vae._reference._field
    assert isinstance(field, _SampledField) and len(field.points) == REFINE_NEGATIVES
    assert field.weight == len(vae.embedding_) / REFINE_NEGATIVES
    scaled = KERNEL_SCALE * torch.from_numpy(vae.embedding_)
    assert all(torch.isclose(scaled, point).all(dim=1).any() for point in field.points)
