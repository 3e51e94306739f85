"""Figures: valid PNGs of the expected size, correct grid orientation, label handling."""

import numpy as np
import pytest

from cvae import CompressionVAE
from cvae.plotting import (
    PRIOR_RANGE,
    embedding_range,
    latent_grid,
    plot_embedding,
    plot_history,
    plot_latent_grid,
    square_image_shape,
)

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def model(digits):
    X, _ = digits
    return CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=60, learning_rate="constant",
                          random_state=0).fit(X)


def test_plot_embedding_png_with_and_without_labels(tmp_path, digits, png_size):
    Z = np.random.default_rng(0).normal(size=(500, 2))
    plot_embedding(Z, filename=tmp_path / "plain.png")
    assert png_size(tmp_path / "plain.png") == (700, 600)
    fig = plot_embedding(Z, labels=digits[1][:500], categories=[f"digit {i}" for i in range(10)],
                         filename=tmp_path / "labels.png", figsize=(5, 4))
    assert png_size(tmp_path / "labels.png") == (500, 400)
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == [f"digit {i}" for i in range(10)]


def test_labels_are_named_in_their_order_and_the_colour_bar_says_what_they_are():
    pd = pytest.importorskip("pandas")
    Z = np.zeros((4, 2))
    fig = plot_embedding(Z, labels=["dog", "cat", "emu", "cat"])  # strings: in order of first appearance
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["dog", "cat", "emu"]
    assert fig.axes[1].get_ylabel() == "label"
    fig = plot_embedding(Z, labels=np.array([3.0, 1.0, 3.0, 2.0]), label_name="digit")  # numbers: increasing
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["1", "2", "3"]
    assert fig.axes[1].get_ylabel() == "digit"
    words = pd.Categorical(["five", "eight", "four", "five"], categories=["four", "five", "eight"])
    fig = plot_embedding(Z, labels=pd.Series(words))  # a categorical: in its categories' order
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["four", "five", "eight"]


def test_a_latent_grid_without_data_spans_the_training_embedding_and_values(digits):
    X = digits[0]
    vae = CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=30, random_state=0).fit(X)
    assert vae.data_range_ == (0.0, 16.0)
    image = plot_latent_grid(vae, (8, 8), grid_size=4).axes[0].images[0]
    assert image.get_clim() == (0.0, 16.0)
    # the training rows embed where the model placed them: the range the data would give
    assert tuple(image.get_extent()[:2]) == pytest.approx(embedding_range(vae, X))
    plain = CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=30, neighbor_weight=0, random_state=0).fit(X)
    assert tuple(plot_latent_grid(plain, (8, 8), grid_size=4).axes[0].images[0].get_extent()[:2]) == PRIOR_RANGE


def test_many_classes_get_a_continuous_colour_bar():
    Z = np.random.default_rng(0).normal(size=(300, 2))
    points = plot_embedding(Z, labels=np.arange(300) % 50).axes[0].collections[0]
    # one continuous map over the 50 codes, not 50 colour bands
    assert points.get_cmap().name == "viridis" and points.get_cmap().N == 256
    assert points.get_clim() == (-0.5, 49.5)
    few = plot_embedding(Z, labels=np.array(list("abcde"))[np.arange(300) % 5])
    assert few.axes[0].collections[0].get_cmap().N == 5  # a band per class, named on its tick
    assert [t.get_text() for t in few.axes[1].get_yticklabels()] == list("abcde")


def test_plot_embedding_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"draws 2-D embeddings; got an array of shape \(5, 3\)"):
        plot_embedding(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="labels has 4 entries for 5 points"):
        plot_embedding(np.zeros((5, 2)), labels=[0, 1, 0, 1])


def test_plot_embedding_draws_into_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.subplots()
    assert plot_embedding(np.zeros((3, 2)), ax=ax) is fig
    assert len(ax.collections) == 1


def test_latent_grid_tiles_decode_the_cell_centres(model):
    image = latent_grid(model, (8, 8), xy_range=(-2.0, 2.0), grid_size=4)
    assert image.shape == (32, 32)
    centres = np.array([-1.5, -0.5, 0.5, 1.5])
    # Top-left tile: lowest first coordinate, highest second coordinate.
    top_left = model.inverse_transform([[centres[0], centres[-1]]]).reshape(8, 8)
    np.testing.assert_allclose(image[:8, :8], top_left, rtol=1e-5, atol=1e-5)
    # Second tile of the bottom row: second-lowest first coordinate, lowest second.
    tile = model.inverse_transform([[centres[1], centres[0]]]).reshape(8, 8)
    np.testing.assert_allclose(image[24:, 8:16], tile, rtol=1e-5, atol=1e-5)


def test_latent_grid_range_defaults_to_where_the_data_embeds(model, digits):
    X = digits[0][:300]
    Z = model.transform(X)
    low, high = embedding_range(model, X)
    for column in Z.T:
        inside = (column >= low) & (column <= high)
        assert inside.mean() >= 0.98  # the 1st to 99th percentiles, and a margin
    assert high - low < 1.2 * (Z.max() - Z.min())
    np.testing.assert_array_equal(latent_grid(model, (8, 8), grid_size=3, X=X),
                                  latent_grid(model, (8, 8), xy_range=(low, high), grid_size=3))
    # without data: where the training rows embed
    np.testing.assert_array_equal(latent_grid(model, (8, 8), grid_size=3),
                                  latent_grid(model, (8, 8), xy_range=embedding_range(model, digits[0]), grid_size=3))
    # drawn within the data's values, so the colours span them
    drawn = plot_latent_grid(model, (8, 8), grid_size=3, X=X).axes[0].images[0].get_array()
    assert drawn.min() >= X.min() and drawn.max() <= X.max()


def test_plot_latent_grid_and_history_pngs(model, tmp_path, png_size):
    plot_latent_grid(model, (8, 8), grid_size=6, clip=(0, 16), filename=tmp_path / "grid.png")
    assert png_size(tmp_path / "grid.png") == (800, 800)
    fig = plot_history(model, filename=tmp_path / "history.png")
    assert png_size(tmp_path / "history.png") == (800, 600)
    assert fig.axes[1].get_yscale() == "log"


def test_latent_grid_checks_the_model(model, digits):
    with pytest.raises(ValueError, match=r"shape \(7, 7\) has 49 pixels, but the model has 64 features"):
        latent_grid(model, (7, 7))
    wide = CompressionVAE(n_components=3, hidden_layer_sizes=(16,), max_steps=2, learning_rate="adaptive",
                          random_state=0)
    with pytest.warns(Warning):  # the adaptive rule warns that 2 steps did not converge
        wide.fit(digits[0])
    with pytest.raises(ValueError, match="needs a 2-D latent space; this model has n_components=3"):
        latent_grid(wide, (8, 8))
    with pytest.raises(ValueError, match="history is empty"):
        plot_history([])


def test_square_image_shape():
    assert square_image_shape(784) == (28, 28) and square_image_shape(64) == (8, 8)
    assert square_image_shape(65) is None and square_image_shape(3) is None
