"""The benchmark scripts run end to end at a tiny scale (their figures are not checked here)."""

import json
import runpy
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_speed_benchmark_writes_its_table_and_json(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_speed.py"))
    out = tmp_path / "speed.json"
    # Without compile=True, whose first compilation in a process takes seconds (the compiled
    # fit is tested in test_estimator.py).
    module["main"](["--batch-sizes", "64", "--scale", "0.01", "--rows", "3000", "--repeats", "1", "--no-compile",
                    "--out", str(out)])
    result = json.loads(out.read_text())
    (row,) = result["training"]
    assert row["batch_size"] == 64 and row["steps"] == 20 and row["cvae_compiled_samples_per_s"] is None
    assert row["plain_samples_per_s"] > 0 and row["cvae_samples_per_s"] > 0 and row["cvae_iaf5_samples_per_s"] > 0
    assert row["cvae_bf16_samples_per_s"] > 0
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
    # one run: each starts a process, whose first optimizer imports torch._dynamo (seconds)
    module["main"](["--rows", "3000", "--features", "16", "--steps", "8", "--batch-size", "32", "--skip-torchrun",
                    "--runs", "stream-npy", "--workdir", str(tmp_path / "data"), "--out", str(out)])
    result = json.loads(out.read_text())
    runs = {run["run"]: run for run in result["runs"]}
    assert set(runs) == {"stream-npy"} and runs["stream-npy"]["steps"] == 8
    assert all(run["peak_rss_mb"] > 0 for run in runs.values())
    assert not (tmp_path / "data").exists()  # removed without --keep
    assert "stream-npy" in capsys.readouterr().out


def test_scale_benchmark_of_the_neighbour_option_measures_graph_memory_and_quality(tmp_path):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_scale.py"))
    out = tmp_path / "neighbors.json"
    module["main"](["--neighbors", "--skip-plain", "--rows", "3000", "--features", "16", "--steps", "8",
                    "--out", str(out)])
    document = json.loads(out.read_text())
    runs = {run["run"]: run for run in document["runs"]}
    assert set(runs) == {"neighbors"} and runs["neighbors"]["steps"] == 8
    # (k, seconds, rows searched): 2,700 training rows, 300 validation rows, below the budget's sample
    assert [(k, rows) for k, _, rows in runs["neighbors"]["graph_seconds_by_k"]] == [(15, 2700), (1, 300)]
    assert runs["neighbors"]["graph_recall"] == 1.0  # an exact graph
    assert runs["neighbors"]["peak_rss_beyond_baseline_mb"] > 0 and "test_knn10" in runs["neighbors"]
    assert not document["targets"]["cluster 10-NN above the plain VAE's"]  # no plain VAE to be above


def test_mnist_benchmark_compares_iaf_over_seeds_on_the_mean(tmp_path, capsys):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    pixels = (X * 255 / 16).astype(np.uint8)
    data = tmp_path / "small.npz"
    np.savez(data, X_train=pixels[:1200], y_train=y[:1200], X_test=pixels[1200:], y_test=y[1200:])
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_mnist.py"))
    out = tmp_path / "iaf.json"
    module["main"](["--data", str(data), "--only-iaf", "--iaf-steps", "20", "--iaf-seeds", "0", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    iaf = result["iaf_same_budget"]
    assert [runs["seed"] for runs in iaf["per_seed"]] == [0, 1]
    for label in ("iaf_0", "iaf_on"):
        elbos = [runs[label]["test_elbo"] for runs in iaf["per_seed"]]
        assert elbos[0] != elbos[1]  # the seed reaches the fit
        assert iaf[label]["test_elbo"] == pytest.approx(np.mean(elbos))
    met = iaf["iaf_on"]["test_elbo"] > iaf["iaf_0"]["test_elbo"]
    assert result["targets_met"] == {"IAF ELBO > no-flow ELBO": met}
    assert "mean over seeds" in capsys.readouterr().out


def test_neighbors_benchmark_writes_its_table_and_json(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_neighbors.py"))
    out = tmp_path / "neighbors.json"
    module["main"](["--max-steps-digits", "30", "--methods", "pca", "vae", "iaf", "neighbours", "neighbours-tsne",
                    "--n-neighbors", "5", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]["digits"]
    assert list(rows) == ["PCA", "VAE", "VAE + IAF-2", "VAE + neighbours (0.4, k=5, x1)",
                          "VAE + tsne neighbours (0.4, k=5, x1)"]
    for row in rows.values():
        trusts = [row[key] for key in ("trustworthiness", "train_trustworthiness", "placed_trustworthiness")]
        # chance: 10-NN 0.1 on ten classes, trustworthiness about 0.5 for a random map
        assert row["knn"] > 0.15 and all(trust > 0.55 for trust in trusts)
    # even at 30 steps the neighbour term shows (about 0.5 against 0.2)
    plain = rows["VAE"]["knn"]
    assert rows["VAE + neighbours (0.4, k=5, x1)"]["knn"] > plain + 0.1
    assert rows["VAE + tsne neighbours (0.4, k=5, x1)"]["knn"] > plain + 0.1
    assert "test_elbo" in rows["VAE"] and "mse" in rows["PCA"]
    assert "trust" in capsys.readouterr().out


def test_neighbors_benchmark_runs_only_the_methods_asked_for(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_neighbors.py"))
    out = tmp_path / "neighbors.json"
    tables = []
    for flows, nll in [(0, 87.5), (4, 86.5)]:  # two bench_likelihood.py files, one run each
        run = {"iaf_flow_length": flows, "epochs": 10, "test_elbo": -90.0, "test_nll": nll, "active_units": 20}
        tables.append(tmp_path / f"likelihood_{flows}.json")
        tables[-1].write_text(json.dumps({"settings": {"minutes": 60, "k": 1000}, "runs": [run]}))
    module["main"](["--methods", "pca", "--likelihood", *map(str, tables), "--out", str(out)])
    result = json.loads(out.read_text())
    assert list(result["results"]["digits"]) == ["PCA"] and result["targets"] == {}
    printed = capsys.readouterr().out
    assert "87.50" in printed and "86.50" in printed and "IAF-4" in printed


def test_train_knn_tells_separated_classes_from_mixed_ones():
    train_knn = runpy.run_path(str(ROOT / "benchmarks" / "bench_neighbors.py"))["train_knn"]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    separated = y[:, None] * 10.0 + rng.normal(size=(2000, 2))
    assert train_knn(separated, y, n_rows=1000) == 1.0
    assert train_knn(rng.normal(size=(2000, 2)), y, n_rows=1000) < 0.4


def test_placement_by_train_neighbours_is_the_median_of_their_embeddings():
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_neighbors.py"))
    X_train = np.arange(20.0)[:, None]
    Z_train = np.c_[np.arange(20.0), np.zeros(20)]
    Z_train[3] = [100.0, 100.0]  # one of 2.1's three nearest rows, placed far away
    rows = module["nearest_train_rows"](X_train, np.array([[2.1], [15.2]]), n_neighbors=3)
    assert [sorted(r) for r in rows.tolist()] == [[1, 2, 3], [14, 15, 16]]
    placed = module["placed_by_train_neighbours"](Z_train, rows)
    assert placed.tolist() == [[2.0, 0.0], [15.0, 0.0]]


def test_positive_pairs_count_what_each_method_pulls_together():
    from types import SimpleNamespace

    from scipy.sparse import csr_matrix

    from cvae import CompressionVAE

    positive_pairs = runpy.run_path(str(ROOT / "benchmarks" / "bench_neighbors.py"))["positive_pairs"]
    X = np.random.default_rng(0).random((200, 5)).astype(np.float32)
    option = CompressionVAE(neighbor_weight=0.4, neighbor_samples=3, max_steps=7, batch_size=16,
                            validation_interval=5, learning_rate="constant").fit(X)
    assert positive_pairs(option, len(X)) == option.n_steps_ * 16 * option.neighbor_samples == 7 * 16 * 3
    plain = CompressionVAE(max_steps=3, learning_rate="constant", neighbor_weight=0).fit(X)
    assert positive_pairs(plain, len(X)) is None
    graph = csr_matrix(np.array([[0, 1.0, 0.5], [1.0, 0, 0.25], [0.5, 0.25, 0]]))
    # umap-learn's default for small data: 500 epochs; weights relative to the largest
    assert positive_pairs(SimpleNamespace(graph_=graph, n_epochs=None), 3) == 500 * 3.5
    assert positive_pairs(SimpleNamespace(graph_=graph, n_epochs=10), 20_000) == 10 * 3.5


def test_likelihood_benchmark_writes_its_table_and_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "mnist.npz"
    np.savez(data, X_train=rng.integers(0, 256, (300, 784), dtype=np.uint8),
             X_test=rng.integers(0, 256, (50, 784), dtype=np.uint8))
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_likelihood.py"))
    out = tmp_path / "likelihood.json"
    module["main"](["--data", str(data), "--minutes", "5", "--max-steps", "30", "--flows", "0", "2", "--jobs", "1",
                    "--threads", "1", "--k", "20", "--validation-rows", "50", "--validation-interval", "5",
                    "--out", str(out)])
    runs = json.loads(out.read_text())["runs"]
    assert [run["iaf_flow_length"] for run in runs] == [0, 2]
    for run in runs:
        assert run["steps"] == 30 and run["stop_reason"] == "max_steps" and run["threads"] == 1
        # the importance-weighted bound is tighter than the ELBO: a lower NLL than -ELBO
        assert run["test_nll"] <= -run["test_elbo"] + 1.0
        assert 0 <= run["active_units"] <= 50 and run["curve"]
    assert "IWAE paper" in capsys.readouterr().out
    # bench_neighbors.py prints the same table from this JSON
    print_likelihood_table = runpy.run_path(str(ROOT / "benchmarks" / "bench_neighbors.py"))["print_likelihood_table"]
    print_likelihood_table(json.loads(out.read_text()))
    assert "Gaussian" in capsys.readouterr().out


def test_neighbor_sweep_appends_its_result(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "sweep_neighbors.py"))
    out = tmp_path / "settings.jsonl"
    for samples in (1, 2):
        module["main"](["--max-steps", "20", "--neighbor-samples", str(samples), "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["neighbor_samples"] for row in rows] == [1, 2]
    # chance: 10-NN 0.1 on ten classes, trustworthiness about 0.5 for a random map
    assert all(row["knn"] > 0.25 and row["train_knn"] > 0.25 and row["mse"] > 0 for row in rows)
    assert all(row["trustworthiness"] > 0.6 and row["train_trustworthiness"] > 0.6 for row in rows)
    assert "trust" in capsys.readouterr().out


def test_time_to_quality_scores_each_stage_of_a_fit(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_time_to_quality.py"))
    out = tmp_path / "ttq.json"
    module["main"](["--methods", "pca", "plateau", "vae", "vae-early", "--max-steps", "60", "--stage-steps", "20",
                    "--patience", "1", "--out", str(out)])
    document = json.loads(out.read_text())
    assert {"cpu", "amx", "avx512_bf16", "threads"} <= document["machine"].keys()
    rows = document["results"]["digits"]
    curve = rows["plateau"]["curve"]
    assert [point["steps"] for point in curve] == [20, 40, 60] and rows["plateau"]["steps"] == 60
    seconds = [point["seconds"] for point in curve]
    assert seconds == sorted(seconds) and rows["plateau"]["fit_seconds"] == seconds[-1]
    # the cosine schedule of the defaults is a function of max_steps: one stage
    assert [point["steps"] for point in rows["vae"]["curve"]] == [60]
    assert rows["plateau"]["knn"] > 0.15 and rows["pca"]["knn"] > 0.5 and rows["pca"]["mse"] > 0
    assert rows["vae-early"]["steps"] <= 60
    # the defaults place test rows by their nearest training rows; the encoder's own map is scored beside
    assert {"knn", "trustworthiness"} == rows["vae"]["encoder"].keys() and rows["vae"]["knn"] > 0.5
    assert "10-NN" in capsys.readouterr().out


def test_time_to_quality_runs_on_generated_counts_and_text(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_time_to_quality.py"))
    out = tmp_path / "ttq.json"
    module["main"](["--datasets", "counts", "text", "--methods", "pca", "vae", "--max-steps", "20",
                    "--generated-rows", "600", "--out", str(out)])
    results = json.loads(out.read_text())["results"]
    assert results.keys() == {"counts", "text"}
    for rows in results.values():
        assert rows.keys() == {"pca", "vae"} and rows["vae"]["steps"] == 20 and rows["pca"]["knn"] > 0.3


def test_threads_benchmark_times_the_rule_and_all_threads(tmp_path, capsys, monkeypatch):
    out = tmp_path / "threads.json"
    data = tmp_path / "mnist.npz"
    np.savez(data, X_train=np.random.default_rng(0).integers(0, 256, (300, 784), dtype=np.uint8))
    # The concurrent fits are spawned processes, which find the script by its module name.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_threads

    bench_threads.main(["--data", str(data), "--steps", "5", "--others", "1", "--concurrent", "2", "--rounds", "1",
                        "--settings", "rule", "--out", str(out)])
    document = json.loads(out.read_text())
    assert document["data"] == "mnist" and document["steps"] == 5
    assert [row["other_processes"] for row in document["rows"]] == [1] and document["rows"][0]["rule"] > 0
    assert "other(s)" in capsys.readouterr().out
    # one round of the chosen setting, two fits at once
    assert [row["setting"] for row in document["concurrent"]] == ["rule"]
    assert all(len(row["fit_seconds"]) == 2 and row["wall_seconds"] >= max(row["fit_seconds"])
               for row in document["concurrent"])


def test_gpu_benchmark_runs_in_its_small_mode_on_the_cpu(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_gpu.py"))
    out = tmp_path / "gpu.json"
    module["main"](["--small", "--device", "cpu", "--batch-sizes", "64", "--out", str(out)])
    document = json.loads(out.read_text())
    assert set(document["quality"]) == {"plain", "neighbours"}
    assert all(row["steps"] == 60 and row["knn"] > 0.15 for row in document["quality"].values())
    assert set(document["training_samples_per_s"]) == {"float32", "bfloat16"}
    assert all(rate > 0 for by_batch in document["training_samples_per_s"].values() for rate in by_batch.values())
    assert document["cpu_copy_device"] == "cpu" and document["cpu_copy_max_difference"] < 1e-4
    assert "transform rows/s" in capsys.readouterr().out


def test_sparse_benchmark_measures_memory_throughput_and_recovery(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_sparse.py"))
    out = tmp_path / "sparse.json"
    # one method: each runs in a process of its own, which costs seconds to start
    module["main"](["--small", "--methods", "poisson", "--work", str(tmp_path / "work"), "--out", str(out)])
    document = json.loads(out.read_text())
    assert document["data"]["rows"] == 3000 and document["data"]["features"] == 300
    row = document["methods"]["poisson"]
    assert set(document["methods"]) == {"poisson"}
    assert row["knn"] > 0.5 and row["steps"] == 150  # four clusters: chance is about 0.25
    assert row["peak_rss_mb"] >= row["model_and_runtime_mb"] > 0 and row["transform_all_seconds"] > 0
    assert set(document["throughput"]["rows_per_s"]) == {"sparse", "dense"}
    assert "training rows/s" in capsys.readouterr().out


def test_counts_auto_benchmark_fits_each_likelihood_on_each_kind_of_data(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_counts_auto.py"))
    out = tmp_path / "auto.json"
    module["main"](["--max-steps", "30", "--count-rows", "400", "--count-features", "50", "--out", str(out)])
    rows = json.loads(out.read_text())["rows"]
    assert [(row["data"], row["likelihood"]) for row in rows] == [
        (data, likelihood) for data in ("digits (0-16)", "generated counts")
        for likelihood in ("gaussian", "poisson", "negative_binomial")]
    assert all(row["steps"] == 30 and 0.1 < row["knn"] for row in rows)
    assert "10-NN" in capsys.readouterr().out


def test_neighbor_graph_benchmark_compares_with_the_exact_search(tmp_path, capsys):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    data = tmp_path / "small.npz"
    np.savez(data, X_train=(X * 255 / 16).astype(np.uint8), y_train=y)
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_neighbor_graph.py"))
    out = tmp_path / "graph.json"
    module["main"](["--data", str(data), "--rows", "500", "--n-neighbors", "5", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    # 500 rows are searched exactly, so both searches find scikit-learn's neighbours.
    assert rows["cvae (50 principal components)"]["recall"] > 0.95
    assert rows["cvae blockwise, all features"]["recall"] > 0.95
    assert "recall" in capsys.readouterr().out


def test_trust_probe_runs_the_benchmark_with_each_change_and_records_it(tmp_path):
    # A subprocess: the probes change the package for the process that runs them.
    import subprocess
    import sys

    out = tmp_path / "probe.json"
    setting = '{"neighbor_weight": 0.4, "neighbor_objective": "tsne", "max_steps": 30}'
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "probe_trust.py"), "--scale", "5", "--exact-graph",
                    "--interpolate", "0.5", "--input-dropout", "0.1", "--methods", "pca", "--setting", "probed",
                    setting, "--train-trust", "--out", str(out)], check=True, capture_output=True)
    document = json.loads(out.read_text())
    assert document["probe"] == {"scale": 5.0, "exact_graph": True, "interpolate": 0.5, "weight_decay": None,
                                 "input_dropout": 0.1}
    rows = document["results"]["digits"]
    assert rows["probed"]["steps"] == 30
    # PCA keeps most of digits' neighbourhoods on the training rows as on the test rows
    assert abs(rows["pca"]["train_trustworthiness"] - rows["pca"]["trustworthiness"]) < 0.05
    assert rows["pca"]["train_trustworthiness"] > 0.75


def test_placement_benchmark_scores_each_route(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_placement.py"))
    out = tmp_path / "placement.json"
    module["main"](["--max-steps", "30", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]["digits"]
    assert rows["steps"] == 30 and set(module["ROUTES"]) <= rows.keys()
    assert rows["encoder"]["knn"] != rows["grid"]["knn"] and rows["median"]["knn"] > 0.5
    assert all(rows[route]["rows_per_second"] > 0 for route in module["ROUTES"])
    assert "rows/s" in capsys.readouterr().out
    import cvae.neighbors.placement

    placement = cvae.neighbors.placement
    assert placement.REFINE_STEPS == 30 and placement.NeighborReference._field.func.__name__ == "_field"


def test_get_mnist_splits_openml_rows_into_the_benchmarks_file(tmp_path):
    module = runpy.run_path(str(ROOT / "benchmarks" / "get_mnist.py"))
    X = np.arange(70000 * 2).reshape(70000, 2) % 256
    module["save_mnist"](X, np.arange(70000).astype(str), tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as data:
        assert data["X_train"].shape == (60000, 2) and data["X_test"].shape == (10000, 2)
        assert data["X_train"].dtype == np.uint8 and data["y_test"][0] == 60000


def test_export_benchmark_scores_what_is_served(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_export.py"))
    out = tmp_path / "export.json"
    # the encoder alone: an export of the placement takes about 20 s (tested in test_export.py)
    module["main"](["--max-steps", "30", "--parts", "encoder", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]["digits"]
    assert rows["exported encoder"]["megabytes"] > 0 and rows["exported encoder"]["export_seconds"] > 0
    assert rows["exported encoder"]["max_difference_over_spread"] > 1e-3  # the encoder is not the placement
    assert "max diff/spread" in capsys.readouterr().out


def test_encoder_routes_benchmark_scores_each_route(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_encoder_routes.py"))
    out = tmp_path / "routes.json"
    module["main"](["--max-steps", "30", "--steps", "20", "--augment", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]["digits"]
    routes = {"placement", "encoder", "distill-mix", "distill-noise-0.5", "distill-noise-1.0", "student-pcs"}
    assert routes <= rows.keys() and rows["encoder"]["knn"] != rows["placement"]["knn"]
    assert rows["distill-mix"]["seconds_after_fit"] > 0 and rows["encoder"]["seconds_after_fit"] == 0
    assert "after the fit" in capsys.readouterr().out


def test_integration_benchmark_scores_bio_and_batch(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_integration.py"))
    out = tmp_path / "integration.json"
    rows = module["main"](["--cells", "500", "--genes", "100", "--max-steps", "60", "--dims", "2", "--out", str(out),
                           "--vae", "plain", "covariate", "mapped", "frozen", "classifier"])
    rows = {row["method"]: row for row in rows}
    pca, plain = rows["PCA (unintegrated)"], rows["CompressionVAE 2-D, no covariates"]
    conditioned, mapped = rows["CompressionVAE 2-D, batch covariate"], rows["CompressionVAE 2-D, last batch mapped"]
    assert plain["celltype_knn"] > 0.6 and conditioned["celltype_knn"] > 0.6  # 8 types: chance 0.125
    # the batch as a covariate mixes the batches (chance 1/3): 0.56 against 0.88 measured
    assert conditioned["batch_knn"] < plain["batch_knn"] - 0.15 and conditioned["batch_asw"] > plain["batch_asw"]
    assert 0 < mapped["reference_moved"] < 0.1  # every weight trained, the landmarks holding the reference
    assert rows["CompressionVAE 2-D, last batch mapped, reference frozen"]["reference_moved"] == 0  # new columns alone
    classifier = rows["CompressionVAE 2-D, last batch mapped, classifier"]
    # chance 0.125; its vote, of the same model
    assert classifier["last_batch_label_transfer"] > 0.5 and classifier["last_batch_vote_transfer"] > 0.5
    assert 0 < pca["overall"] < 1 and json.loads(out.read_text())["data"]["cells"] == 500
    assert "batch 10-NN chance: 0.333" in capsys.readouterr().out


def test_integration_benchmark_summarizes_several_seeds(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_integration.py"))
    out = tmp_path / "seeds.json"
    rows = module["main"](["--cells", "300", "--genes", "50", "--max-steps", "20", "--dims", "2", "--vae", "covariate",
                           "--seeds", "0", "1", "--batch-free", "--out", str(out)])
    summary = {entry["method"]: entry for entry in json.loads(out.read_text())["summary"]}
    vae = [row for row in rows if row["method"] == "CompressionVAE 2-D, batch covariate"]
    assert [row["seed"] for row in vae] == [0, 1] and vae[0]["overall"] != vae[1]["overall"]  # other data per seed
    entry = summary["CompressionVAE 2-D, batch covariate"]
    assert entry["seeds"] == 2 and entry["overall"]["mean"] == pytest.approx(np.mean([r["overall"] for r in vae]))
    assert entry["overall"]["sd"] == pytest.approx(np.std([r["overall"] for r in vae], ddof=1))
    if "Harmony on PCA" in summary:  # harmonypy installed
        assert summary["Harmony on PCA"]["overall_at_least_harmony"] == 2
    assert "over 2 seeds, mean (sd)" in capsys.readouterr().out
    # the same cells without the batch effects: the batch no longer told apart by PCA's neighbours
    for seed in (0, 1):
        pca, free = ({row["method"]: row for row in rows if row["seed"] == seed}[name]
                     for name in ("PCA (unintegrated)", "PCA, no batch effect"))
        assert free["batch_knn"] < pca["batch_knn"] - 0.1  # 0.51 against 0.69 measured (seed 0)
    assert {"CompressionVAE 2-D, no batch effect"} < {row["method"] for row in rows}


def test_profile_and_model_size_benchmarks_write_their_tables(tmp_path):
    for script, argv in [("bench_profile.py", ["--datasets", "digits", "--square", "256"]),
                         ("bench_model_size.py", ["--steps", "20"])]:
        runpy.run_path(str(ROOT / "benchmarks" / script))["main"]([*argv, "--out", str(tmp_path / f"{script}.json")])
    profile, sizes = (json.loads((tmp_path / f"{name}.json").read_text())
                      for name in ("bench_profile.py", "bench_model_size.py"))
    row = profile["rows"][0]
    assert row["data"] == "digits" and row["step_gflop"] > 0 and row["steps"] > 0
    parts = row["seconds"]
    assert parts["steps"] == pytest.approx(parts["forward"] + parts["backward"] + parts["optimizer"])
    # without stored rows a model file is smaller, and holds none of them
    kept, bare = (next(r for r in sizes["runs"] if r["neighbor_weight"] == "auto" and r["store_rows"] == s)
                  for s in (True, False))
    assert bare["pickle_mb"] < kept["pickle_mb"] and bare["reservoir_mb"] == bare["reference_mb"] == 0


def test_speed_probe_encodes_principal_components_saved_with_the_weights(tmp_path, monkeypatch):
    import cvae.training.lifecycle
    from cvae.nn import vae

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    for owner, name in ((vae.VAE, "__init__"), (vae.VAE, "encode"), (cvae.training.lifecycle, "run_training")):
        monkeypatch.setattr(owner, name, getattr(owner, name))  # restored after the test
    probe = runpy.run_path(str(ROOT / "benchmarks" / "probe_speed.py"))
    out = tmp_path / "probe.json"
    document = probe["main"](["--pca-input", "8", "--datasets", "digits", "--methods", "vae", "--max-steps", "20",
                              "--out", str(out)])
    assert json.loads(out.read_text())["probe"] == {"pca_input": 8, "bench": "time_to_quality"}
    assert document["results"]["digits"]["vae"]["steps"] == 20
    assert probe["_PROJECTION"]["components"].shape == (8, 64)  # fitted on the digits' 64 pixels


def test_labels_benchmark_reports_the_vote_and_the_classifier(tmp_path, capsys):
    module = runpy.run_path(str(ROOT / "benchmarks" / "bench_labels.py"))
    out = tmp_path / "labels.json"
    module["main"](["--datasets", "digits", "--shares", "0.1", "--methods", "vae", "--classifier-weight", "1",
                    "--vae-params", '{"max_steps": 60, "n_components": 3}', "--out", str(out)])
    document = json.loads(out.read_text())
    assert document["args"]["vae_params"] == '{"max_steps": 60, "n_components": 3}'
    row = document["results"]["digits"]["0.1"]
    for name in ("vae_predict", "vae_classifier_predict", "vae_classifier_vote_predict"):
        assert row[name]["accuracy"] > 0.5 and 0 <= row[name]["ece"] < 0.5  # 10 classes: chance 0.1
    assert row["vae_classifier_predict"]["accuracy"] != row["vae_classifier_vote_predict"]["accuracy"]
    assert "its vote" in capsys.readouterr().out
