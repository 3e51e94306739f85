"""The benchmark scripts run end to end at a tiny scale (their figures are not checked here)."""

import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_speed_benchmark_writes_its_table_and_json(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_speed.py"))
    out = tmp_path / "speed.json"
    module["main"](["--batch-sizes", "64", "--scale", "0.01", "--rows", "3000", "--repeats", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    (row,) = result["training"]
    assert row["batch_size"] == 64 and row["steps"] == 20
    assert row["plain_samples_per_s"] > 0 and row["cvae_samples_per_s"] > 0 and row["cvae_iaf5_samples_per_s"] > 0
    # 784-512-256-2 and mirror: forward MACs counted from the layers, times 6 for training.
    macs = 784 * 512 + 512 * 256 + 256 * 4 + 2 * 256 + 256 * 512 + 512 * 784
    assert row["train_flops_per_sample"] == 6 * macs
    assert result["inference"]["rows"] == 3000 and result["matmul_gflops"] > 0
    assert not result["targets"]["transform >= 150,000 samples/s on 100k rows"]  # too few rows to count
    table = capsys.readouterr().out
    assert "plain/s" in table and "target train_vs_plain" in table


def test_scale_benchmark_writes_its_table_and_json(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_scale.py"))
    out = tmp_path / "scale.json"
    module["main"](["--rows", "3000", "--features", "16", "--steps", "8", "--batch-size", "32", "--skip-torchrun",
                    "--workdir", str(tmp_path / "data"), "--out", str(out)])
    result = json.loads(out.read_text())
    runs = {run["run"]: run for run in result["runs"]}
    assert set(runs) == {"in-memory", "stream-npy", "stream-dir", "transform"}
    assert runs["stream-npy"]["steps"] == 8 and runs["transform"]["rows"] == 3000
    assert all(run["peak_rss_mb"] > 0 for run in runs.values())
    # The shards hold the .npy file's rows in order, so both streams train the same model.
    assert runs["stream-npy"]["best_validation_loss"] == runs["stream-dir"]["best_validation_loss"]
    assert not (tmp_path / "data").exists()  # removed without --keep
    assert "stream-dir" in capsys.readouterr().out


def test_neighbors_benchmark_writes_its_table_and_json(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_neighbors.py"))
    out = tmp_path / "neighbors.json"
    module["main"](["--max-steps-digits", "30", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]["digits"]
    assert {"PCA", "VAE", "VAE + neighbours (0.4)"} <= set(rows)
    assert all(0 <= row["knn"] <= 1 and 0 <= row["trustworthiness"] <= 1 for row in rows.values())
    assert "test_elbo" in rows["VAE"] and "mse" in rows["PCA"]
    assert "trust" in capsys.readouterr().out
