"""The command line, the demo and the examples, run end to end in a fast mode."""

import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from cvae.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_demo_prints_loss_and_knn_against_pca(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert main(["demo", "--max-steps", "300", "--no-plot", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "best validation loss" in out
    assert "10-NN accuracy of the 2-D test embedding: CompressionVAE" in out and "PCA 0." in out


def test_demo_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "digits.png"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        main(["demo", "--max-steps", "50", "--plot", str(path), "--quiet"])
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (700, 600)


def test_module_entry_point_help():
    result = subprocess.run([sys.executable, "-m", "cvae", "demo", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "digits" in result.stdout and "--max-steps" in result.stdout


def test_user_errors_are_one_line_without_traceback(capsys):
    assert main(["demo", "--max-steps", "0", "--quiet", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cvae demo: error:") and "max_steps" in err and "Traceback" not in err


def test_quickstart_example_runs(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "examples" / "quickstart.py"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        vae = module["main"](["--max-steps", "100", "--logdir", str(tmp_path / "run")])
    assert vae.n_steps_ == 100
    assert "identical embedding" in capsys.readouterr().out
    assert np.isfinite(vae.transform(np.zeros((1, 64)))).all()
