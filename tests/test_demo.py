"""The demo (cvae._demo, `cvae demo`): what it prints and draws."""

import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning

from cvae.cli import main


def test_demo_prints_loss_and_knn_against_pca(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert main(["demo", "--max-steps", "300", "--no-plot", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "best validation loss" in out
    assert "10-NN accuracy of the 2-D test embedding: CompressionVAE" in out and "PCA 0." in out


def test_demo_writes_a_png(tmp_path, png_size):
    pytest.importorskip("matplotlib")
    path = tmp_path / "digits.png"
    main(["demo", "--max-steps", "50", "--plot", str(path), "--quiet"])
    assert png_size(path) == (700, 600)
