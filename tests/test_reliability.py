"""Issue #9: nothing lost, nothing silently wrong. One regression test per defect found,
numbered as in the issue; the fault-injection tests are in test_faults.py."""

import copy
import gc
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from cvae import CompressionVAE
from cvae.cli import main
from cvae.data.rows import Split
from cvae.files import read_array, transform_to_npy
from cvae.training import LogDir

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CLI_FAST = ["--max-steps", "40", "--hidden-layer-sizes", "32,16", "--seed", "0", "--quiet"]


@pytest.fixture
def npy(tmp_path, X):
    np.save(tmp_path / "X.npy", X)
    return tmp_path / "X.npy"


@pytest.fixture
def run(tmp_path, X, fast):
    """A fitted run in a log directory."""
    vae = CompressionVAE(**dict(fast, logdir=str(tmp_path / "run"))).fit(X)
    return vae, tmp_path / "run"


def cli(capsys, *argv):
    """Exit status and standard error of the command line."""
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


# 1. A resume never records parameters its model does not have.
def test_cli_resume_keeps_the_saved_architecture(npy, tmp_path, capsys):
    logdir = tmp_path / "r"
    assert main(["fit", str(npy), "--logdir", str(logdir), "--n-components", "5", *CLI_FAST]) == 0
    assert main(["fit", str(npy), "--logdir", str(logdir), "--resume", "--max-steps", "80", "--quiet"]) == 0
    assert main(["transform", str(logdir), str(npy), "-o", str(tmp_path / "z.npy")]) == 0
    assert np.load(tmp_path / "z.npy").shape == (400, 5)
    loaded = CompressionVAE.load(logdir)
    assert loaded.n_components == loaded.spec_.model.n_latent == 5 and loaded.n_steps_ == 80
    capsys.readouterr()
    assert main(["info", str(logdir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["n_components"] == 5
    status, err = cli(capsys, "fit", npy, "--logdir", logdir, "--resume", "--n-components", "2", "--quiet")
    assert status == 2 and "whose n_components is 5, but n_components=2 was given" in err


def test_warm_start_refuses_another_architecture(run, X):
    vae, _ = run
    for change in (dict(n_components=3), dict(hidden_layer_sizes=(8,)), dict(likelihood="bernoulli"),
                   dict(iaf_flow_length=2), dict(activation="tanh"), dict(dropout=0.5)):
        with pytest.raises(ValueError, match="warm_start=True continues the saved model"):
            CompressionVAE.load(run[1]).set_params(warm_start=True, **change).fit(X)
    vae.set_params(warm_start=True, n_components=7)
    with pytest.raises(ValueError, match="whose n_components is 2"):
        vae.fit(X)


# 3. Memmaps are read as the array holds them, not as the file does.
@pytest.mark.parametrize("mode", ["c", "r+"])
def test_modified_memmaps_are_read_from_memory(run, npy, mode):
    vae, _ = run
    m = np.load(npy, mmap_mode=mode)
    m[:10] += 3.0
    np.testing.assert_array_equal(vae.transform(m), vae.transform(np.array(m)))
    np.testing.assert_array_equal(vae.score_samples(m), vae.score_samples(np.array(m)))


# 4. Parameters are validated wherever they are used.
def test_invalid_parameters_set_after_fit_are_errors(run, X):
    vae, logdir = run
    vae.set_params(eval_batch_size=-1)
    for call in (lambda: vae.transform(X), lambda: vae.score_samples(X),
                 lambda: vae.inverse_transform(np.zeros((2, 2))), lambda: vae.sample(2)):
        with pytest.raises(ValueError, match="eval_batch_size"):
            call()
    path = logdir / "params.json"
    document = json.loads(path.read_text())
    document["params"]["eval_batch_size"] = -5
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"Cannot read .*params.json: .*eval_batch_size"):
        CompressionVAE.load(logdir)


# 5. A fit without a finite validation loss warns; rates that cannot train are refused;
#    the data's scale never flushes to zero.
def test_a_fit_that_never_validates_finitely_warns(X, fast):
    with pytest.warns(ConvergenceWarning, match="No validation loss was finite"):
        vae = CompressionVAE(**dict(fast, learning_rate_init=1e30)).fit(X)
    assert vae.stop_reason_ == "diverged" and vae.best_validation_loss_ == float("inf")


@pytest.mark.parametrize("schedule, consequence", [("adaptive", "would stop"), ("cosine", "would raise")])
def test_learning_rate_below_its_minimum_is_refused(X, fast, schedule, consequence):
    with pytest.raises(ValueError, match=f"learning_rate_init=1e-06 is below learning_rate_min=1e-05: .*{consequence}"):
        CompressionVAE(**dict(fast, learning_rate=schedule, learning_rate_init=1e-6)).fit(X)


def test_data_whose_scale_underflows_float32_is_refused_and_large_data_trains(X, fast):
    with pytest.raises(ValueError, match="below float32's smallest normal number.*Rescale X"):
        CompressionVAE(**fast).fit(X.astype(np.float64) * 1e-40)
    big = CompressionVAE(**fast).fit((X / 16 * 3.3e38).astype(np.float32))
    assert np.isfinite(big.best_validation_loss_) and np.isfinite(big.transform(X)).all()


# 6. Text labels in a CSV.
def test_csv_label_column_may_hold_text(tmp_path, capsys):
    rows = ["1,2,zero", "3,4,one", "5,6,zero"]
    (tmp_path / "t.csv").write_text("\n".join(["a,b,label"] + rows * 40) + "\n")
    data, labels = read_array(tmp_path / "t.csv", label_column="label")
    assert data.shape == (120, 2) and list(labels[:3]) == ["zero", "one", "zero"]
    assert main(["fit", str(tmp_path / "t.csv"), "--label-column", "label", "--logdir", str(tmp_path / "r"),
                 *CLI_FAST]) == 0


# 7. The command line ends user mistakes with one line and exit status 2.
def test_cli_os_and_device_errors_are_one_line(run, npy, tmp_path, capsys):
    _, logdir = run
    status, err = cli(capsys, "fit", npy, "--logdir", tmp_path / "m", "--device", "mps", "--quiet")
    assert status == 2 and "Apple MPS is not available" in err and "Traceback" not in err
    status, err = cli(capsys, "transform", logdir, npy, "-o", npy / "z.npy")  # under a file
    assert status == 2 and err.startswith("cvae transform: error:")
    loop = tmp_path / "loop"
    loop.mkdir()
    os.symlink(loop, loop / "again")
    status, err = cli(capsys, "fit", loop, "--logdir", tmp_path / "l", "--quiet")
    assert status == 2 and err.startswith("cvae fit: error:")
    dangling = tmp_path / "dangling"
    dangling.mkdir()
    np.save(dangling / "a.npy", np.zeros((3, 4), np.float32))
    os.symlink(tmp_path / "gone.npy", dangling / "b.npy")
    status, err = cli(capsys, "fit", dangling, "--logdir", tmp_path / "d", "--quiet")
    assert status == 2 and "b.npy" in err and "dangling link" in err


def test_a_folder_named_like_a_npy_file_is_not_read(tmp_path, fast):
    np.save(tmp_path / "a.npy", np.random.default_rng(0).random((50, 4)).astype(np.float32))
    (tmp_path / "b.npy").mkdir()
    np.save(tmp_path / "b.npy" / "c.NPY", np.random.default_rng(1).random((30, 4)).astype(np.float32))
    vae = CompressionVAE(**fast).fit(tmp_path)
    assert vae.n_features_in_ == 4
    assert read_array(tmp_path)[0].shape == (80, 4)  # .NPY counts too (15.)


# 8. A file given as the log directory.
def test_logdir_naming_a_file_says_so(npy, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for extra in ([], ["--resume"]):
        status, err = cli(capsys, "fit", npy, "--logdir", tmp_path / "f", *extra, *CLI_FAST)
        assert status == 2 and "is a file, not a directory" in err


# 9. load and resume validate what they read, and name the file.
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d["params"].update(n_components="two"), "n_components"),
        (lambda d: d["spec"].pop("seed"), "lacks seed"),
        (lambda d: d.pop("spec"), "must be a JSON object"),
        (lambda d: d["params"].update(colour=1), "unknown parameters colour"),
    ],
)
def test_damaged_params_json_is_named(run, damage, message):
    _, logdir = run
    path = logdir / "params.json"
    document = json.loads(path.read_text())
    damage(document)
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=rf"params.json.*{message}"):
        CompressionVAE.load(logdir)


def test_deeply_nested_params_json_is_a_clear_error(run):
    _, logdir = run
    (logdir / "params.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError, match="params.json: it is not valid JSON"):
        CompressionVAE.load(logdir)


@pytest.mark.parametrize("content", [b"PK\x03\x04broken", b"", np.zeros(3).tobytes()])
def test_damaged_split_is_named(run, X, content):
    _, logdir = run
    (logdir / "split.npz").write_bytes(content)
    with pytest.raises(ValueError, match="split.npz"):
        CompressionVAE.load(logdir).set_params(warm_start=True, max_steps=80).fit(X)


def test_split_with_impossible_rows_is_named(run, X):
    _, logdir = run
    LogDir(logdir).write_split(Split(np.array([5, 5, 900]), 400))
    with pytest.raises(ValueError, match="split.npz: its validation rows are not distinct"):
        CompressionVAE.load(logdir).set_params(warm_start=True, max_steps=80).fit(X)


def test_checkpoint_with_non_finite_weights_is_named(run):
    _, logdir = run
    run_dir = LogDir(logdir)
    spec = run_dir.read_params()[1]
    state = run_dir.read_checkpoint(spec)
    name = next(iter(state["best_model"]))
    state["best_model"][name] = torch.full_like(state["best_model"][name], float("nan"))
    run_dir.write_checkpoint(state)  # a consistent digest: the weights themselves are wrong
    with pytest.raises(ValueError, match=rf"checkpoint.pt holds non-finite or missing weights \({name}\)"):
        CompressionVAE.load(logdir)


# 10.
def test_transform_to_npy_checks_chunk_size(run, X, tmp_path):
    vae, _ = run
    for bad in (-1, 0, 2.5, True):
        with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
            transform_to_npy(vae, X, tmp_path / "z.npy", chunk_size=bad)


# 11. Stale temporaries are removed when a run is opened; the history follows the checkpoints.
def test_stale_temporaries_are_cleaned_and_history_follows_checkpoints(run, X):
    _, logdir = run
    stale = [logdir / ".checkpoint.pt.cvae-abc123.tmp", logdir / ".history.csv.cvae-xyz.tmp"]
    for path in stale:
        path.write_bytes(b"left by a killed process")
    users = logdir / ".notes.tmp"  # a user's own hidden file is not the package's to delete
    users.write_text("mine")
    resumed = CompressionVAE.load(logdir).set_params(warm_start=True, max_steps=100, checkpoint_interval=20)
    resumed.fit(X)
    assert not any(path.exists() for path in stale) and users.read_text() == "mine"
    assert len((logdir / "history.csv").read_text().splitlines()) == 1 + len(resumed.history_)


def test_history_is_written_with_every_checkpoint(tmp_path, X, fast):
    seen = []
    write = LogDir.write_checkpoint

    def spy(self, state):
        write(self, state)
        seen.append(len((self.path / "history.csv").read_text().splitlines()) - 1)

    LogDir.write_checkpoint = spy
    try:
        CompressionVAE(**dict(fast, logdir=str(tmp_path / "r"), checkpoint_interval=20)).fit(X)
    finally:
        LogDir.write_checkpoint = write
    assert seen == [1, 2, 3, 3]  # after the validations at 20, 40, 60, and at the end


# 12. Paths in logdir.
def test_logdir_expands_the_home_directory_and_refuses_empty(tmp_path, monkeypatch, X, fast):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    CompressionVAE(**dict(fast, logdir="~/x")).fit(X)
    assert (tmp_path / "x" / "checkpoint.pt").is_file() and not (tmp_path / "~").exists()
    assert CompressionVAE.load("~/x").n_steps_ == 60
    with pytest.raises(ValueError, match="logdir='' names no directory"):
        CompressionVAE(**dict(fast, logdir="")).fit(X)


# 13. Parameters of the wrong kind.
@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_components=True), "n_components must be a number, not a bool"),
        (dict(hidden_layer_sizes=(float("nan"),)), "hidden_layer_sizes must be a non-empty sequence"),
        (dict(hidden_layer_sizes=("a",)), "hidden_layer_sizes must be a non-empty sequence"),
        (dict(device="meta"), "runs on 'cpu', 'cuda' or 'mps'"),
        (dict(device="nonsense"), "device='nonsense' is not a device"),
    ],
)
def test_parameters_of_the_wrong_kind_are_clear_errors(X, fast, params, message):
    with pytest.raises(ValueError, match=message):
        CompressionVAE(**dict(fast, **params)).fit(X)


# 14.
def test_fit_reports_where_it_saved(npy, tmp_path, capsys):
    assert main(["fit", str(npy), "--logdir", str(tmp_path / "B"), *CLI_FAST]) == 0
    assert f"saved in {tmp_path / 'B'}" in capsys.readouterr().out
    assert (tmp_path / "B" / "checkpoint.pt").is_file()


# 15. A digest catches flipped bits; renamed columns are refused on a warm start.
def test_flipped_bits_in_the_weights_are_detected(run):
    _, logdir = run
    path = logdir / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    tensor = next(iter(state["best_model"].values()))
    tensor.view(-1)[0] = tensor.view(-1)[0] + 1e-3  # what a flipped bit does to a weight
    torch.save(state, path)
    with pytest.raises(ValueError, match="checkpoint.pt is damaged: its weights do not match the digest"):
        CompressionVAE.load(logdir)


def test_warm_start_with_renamed_columns_is_refused(X, fast):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"p{i}" for i in range(64)])
    vae = CompressionVAE(**fast).fit(frame)
    with pytest.raises(ValueError, match="'q3' where it had 'p3'"):
        vae.set_params(warm_start=True, max_steps=80).fit(frame.rename(columns={"p3": "q3"}))
    vae.fit(frame)  # the same columns continue
    assert vae.n_steps_ == 80


# 17.
def test_plot_reads_labels_from_an_npz_key(run, npy, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _, logdir = run
    np.savez(tmp_path / "labels.npz", y_train=np.arange(400) % 10, X_train=np.zeros((400, 2)))
    status, err = cli(capsys, "plot", logdir, npy, "--labels", tmp_path / "labels.npz", "-o", tmp_path / "e.png")
    assert status == 2 and "choose one with a key" in err
    assert main(["plot", str(logdir), str(npy), "--labels", str(tmp_path / "labels.npz"), "--labels-key", "y_train",
                 "-o", str(tmp_path / "e.png")]) == 0


# 18.
def test_a_vector_given_as_data_is_an_error(tmp_path, capsys):
    np.save(tmp_path / "v.npy", np.arange(10.0))
    status, err = cli(capsys, "fit", tmp_path / "v.npy", "--logdir", tmp_path / "r", "--quiet")
    assert status == 2 and "shape (10,); expected rows of samples (2-D" in err


# 19.
def test_help_does_not_load_torch():
    script = ("import sys\nfrom cvae.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
              "print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


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
    from cvae.training.run import warn_on_stop

    params = dict(logdir=None, learning_rate="adaptive", max_steps=9, learning_rate_min=1e-5)
    with pytest.warns(category, match=message):
        warn_on_stop(params, {"stop_reason": reason, "step": 7, "best_loss": best})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_on_stop(params, {"stop_reason": "converged", "step": 7, "best_loss": 1.0})


# ---------------------------------------------------------------- round 3 (issue #35)


def test_a_loaded_run_keeps_auto_and_its_clone_resolves_its_own_budget(tmp_path, X, fast):
    from sklearn.base import clone

    params = {k: v for k, v in fast.items() if k != "max_steps"}
    vae = CompressionVAE(logdir=tmp_path / "run", **params).fit(X[:300])
    loaded = CompressionVAE.load(tmp_path / "run")
    assert loaded.get_params()["max_steps"] == "auto" and loaded.max_steps_ == vae.max_steps_ == vae.n_steps_
    other = clone(loaded).set_params(logdir=None).fit(X[:150])
    assert other.max_steps_ != vae.max_steps_ and other.n_steps_ == other.max_steps_


def test_numpy_scalar_parameters_are_saved_with_the_run(tmp_path, X, fast):
    params = dict(fast, max_steps=np.int64(20), random_state=np.int64(3), n_components=np.int64(2),
                  learning_rate_init=np.float32(1e-3))
    vae = CompressionVAE(logdir=tmp_path / "run", **params).fit(X[:200])
    saved = json.loads((tmp_path / "run" / "params.json").read_text())["params"]
    assert saved["max_steps"] == 20 and saved["random_state"] == 3 and vae.n_steps_ == 20
    np.testing.assert_array_equal(CompressionVAE.load(tmp_path / "run").transform(X[:5]), vae.transform(X[:5]))


@pytest.mark.parametrize("name", ["n_jobs", "beta", "patience", "n_neighbors", "max_steps"])
def test_a_bool_for_a_number_is_refused(name, X, fast):
    with pytest.raises(ValueError, match=f"{name} must be a number, not a bool"):
        CompressionVAE(**dict(fast, **{name: True})).fit(X[:100])


def test_n_jobs_beyond_the_cpus_is_refused_before_training(X, fast):
    cpus = os.cpu_count()
    with pytest.raises(ValueError, match=f"n_jobs={cpus + 1} asks for more CPU threads than this machine's {cpus}"):
        CompressionVAE(**dict(fast, n_jobs=cpus + 1)).fit(X[:100])


@pytest.mark.parametrize("weights, match", [
    (np.nan, "sample_weight must be a finite number, got nan"),
    (np.inf, "sample_weight must be a finite number, got inf"),
    ([1.0] * 99 + [np.inf], r"sample_weight holds 1 non-finite value\(s\) \(NaN or infinity\), first at row 99"),
    ([1e-300] * 99 + [1.0], "sample_weight spans too wide a range: 99 row"),
])
def test_unusable_sample_weights_say_what_is_wrong(weights, match, X, fast):
    with pytest.raises(ValueError, match=match):
        CompressionVAE(**fast).fit(X[:100], sample_weight=weights)


def test_huge_sample_weights_are_rescaled_without_overflow(X, fast):
    big = CompressionVAE(**fast).fit(X[:100], sample_weight=[1e308] * 99 + [1e307])
    small = CompressionVAE(**fast).fit(X[:100], sample_weight=[10.0] * 99 + [1.0])
    np.testing.assert_allclose(big.transform(X[:20]), small.transform(X[:20]), atol=1e-5)


def test_cli_options_given_twice_are_refused_and_resume_takes_verbose(run, npy, capsys):
    run = run[1]  # trained in memory with the neighbour term: the CLI reads a small .npy into memory to continue it
    resume = ["fit", str(npy), "--logdir", str(run), "--resume", "--max-steps", "70", "--param", "verbose=false"]
    assert main(resume) == 0
    assert CompressionVAE.load(run).n_steps_ == 70
    assert main(["fit", str(npy), "--logdir", str(run) + "F", *CLI_FAST]) == 0
    assert main(["fit", str(npy), "--logdir", str(run) + "F", "--resume", "--max-steps", "70",
                 "--param", "verbose=false"]) == 0
    capsys.readouterr()
    assert main(["fit", str(npy), "--logdir", str(run) + "A", "--param", "logdir=B"]) == 2
    assert "logdir is given both by its own option and by --param" in capsys.readouterr().err
    assert main(["fit", str(npy), "--logdir", str(run) + "A", "--max-steps", "30", "--param", "max_steps=50"]) == 2
    assert "max_steps is given both by its own option and by --param" in capsys.readouterr().err


def test_cli_bugs_show_their_traceback(npy, tmp_path, monkeypatch):
    import cvae.estimator

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(cvae.estimator.CompressionVAE, "fit", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["fit", str(npy), "--logdir", str(tmp_path / "r")])


@pytest.mark.filterwarnings("error::ResourceWarning")  # no file is left open on the way
def test_an_edited_params_file_is_named_in_the_error(run):
    run = run[1]
    document = json.loads((run / "params.json").read_text())
    document["spec"]["model"]["hidden_sizes"] = [8]
    (run / "params.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"Cannot read .*: the model .*params.json describes does not match"):
        CompressionVAE.load(run)
    gc.collect()  # an unclosed file would warn when collected


def test_atomic_writes_leave_the_umask_alone_and_follow_it(tmp_path):
    import threading

    from cvae.atomic import atomic_write

    previous = os.umask(0o077)
    try:
        seen, stop = set(), threading.Event()

        def watch():  # the umask, as another thread would meet it, while files are written
            while not stop.is_set():
                mask = os.umask(0o077)
                os.umask(mask)
                seen.add(mask)

        watcher = threading.Thread(target=watch)
        watcher.start()
        for i in range(60):
            atomic_write(tmp_path / f"f{i}", b"x")
        stop.set()
        watcher.join()
        assert seen == {0o077}
        assert {(tmp_path / f"f{i}").stat().st_mode & 0o777 for i in range(60)} == {0o600}
    finally:
        os.umask(previous)


def test_a_warm_start_from_memory_never_replaces_another_run_or_a_newer_state(tmp_path, X, fast):
    other = tmp_path / "other"
    CompressionVAE(**dict(fast, logdir=other, n_components=3)).fit(X[:, :4])
    before = (other / "checkpoint.pt").read_bytes()
    m = CompressionVAE(**dict(fast, random_state=2)).fit(X)
    with pytest.raises(FileExistsError, match="holds another training run than the one this estimator continues"):
        m.set_params(logdir=other, warm_start=True).fit(X)
    assert (other / "checkpoint.pt").read_bytes() == before
    # the same run, saved further on than a stale copy of the estimator
    same = tmp_path / "same"
    vae = CompressionVAE(**dict(fast, logdir=same, max_steps=40)).fit(X)
    stale = copy.deepcopy(vae)
    vae.set_params(warm_start=True, max_steps=80).fit(X)
    with pytest.raises(FileExistsError, match=r"holds this run at step 80, further than this estimator's step 40"):
        stale.set_params(warm_start=True, max_steps=120).fit(X)
    # and the same run at its own step continues
    vae.set_params(max_steps=100).fit(X)
    assert CompressionVAE.load(same).n_steps_ == 100


def test_no_rows_to_write_leave_the_output_file_as_it_was(run, tmp_path):
    vae, _ = run
    np.save(tmp_path / "empty.npy", np.zeros((0, 64), dtype=np.float32))
    out = tmp_path / "out.npy"
    np.save(out, np.ones(3))
    before = out.read_bytes()
    with pytest.raises(ValueError, match="holds no rows: there is nothing to write to"):
        transform_to_npy(vae, tmp_path / "empty.npy", out)
    assert out.read_bytes() == before


def test_upper_case_npy_suffixes_are_read_and_written(run, X, tmp_path):
    vae, _ = run
    np.save(tmp_path / "A.npy", X[:10])
    (tmp_path / "A.npy").rename(tmp_path / "A.NPY")
    transform_to_npy(vae, tmp_path / "A.NPY", tmp_path / "Z.NPY")
    np.testing.assert_array_equal(np.load(tmp_path / "Z.NPY"), vae.transform(X[:10]))
    (tmp_path / "dir.npy").mkdir()
    with pytest.raises(ValueError, match=r"dir.npy': it is a directory"):
        transform_to_npy(vae, tmp_path / "A.NPY", tmp_path / "dir.npy")


def test_duplicate_sparse_entries_are_summed_as_the_dense_matrix_sums_them(X, fast):
    import scipy.sparse as sp

    dense = X[:200].astype(np.float32)
    csr = sp.csr_matrix(dense)
    # every value stored as two halves: the same matrix to toarray()
    doubled = sp.csr_matrix((np.repeat(csr.data / 2, 2), np.repeat(csr.indices, 2), 2 * csr.indptr), shape=dense.shape)
    assert not doubled.has_canonical_format and np.array_equal(doubled.toarray(), dense)
    a = CompressionVAE(**fast).fit(doubled)
    b = CompressionVAE(**fast).fit(dense)
    np.testing.assert_array_equal(a.scale_, b.scale_)
    np.testing.assert_array_equal(a.transform(doubled), b.transform(dense))
    assert not doubled.has_canonical_format  # the caller's matrix is not changed


def test_large_sparse_float32_values_are_summarized_as_dense_ones(fast):
    import scipy.sparse as sp

    X = np.zeros((100, 10), dtype=np.float32)
    X[::7, 3] = 1e25
    X[1::3, 5] = 2.0
    a = CompressionVAE(**dict(fast, max_steps=5)).fit(sp.csr_matrix(X))
    b = CompressionVAE(**dict(fast, max_steps=5)).fit(X)
    np.testing.assert_allclose(a.scale_, b.scale_, rtol=1e-6)


def test_a_fit_that_fails_before_writing_leaves_no_directory_behind(tmp_path, fast):
    with pytest.raises(FileNotFoundError):
        CompressionVAE(**dict(fast, logdir=tmp_path / "new")).fit(tmp_path / "missing.npy")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(FileNotFoundError):
        CompressionVAE(**dict(fast, logdir=tmp_path / "old")).fit(tmp_path / "missing.npy")
    assert (tmp_path / "old").is_dir()  # a directory the user made stays


def test_a_damaged_npz_is_named_and_its_file_closed(tmp_path):
    import gc

    from cvae.files import read_labels
    from cvae.data.sources import is_sparse_npz, load_sparse_npz

    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 not an archive" * 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not is_sparse_npz(path)
        for read in (read_array, read_labels, load_sparse_npz):
            with pytest.raises(ValueError, match=r"bad\.npz.*not a readable"):
                read(path)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_seeded_fits_in_threads_give_the_model_of_a_fit_alone(digits):
    # Two seeded fits at once, beside a thread that draws from torch's default generator
    # all the while: each fit gives the model it gives alone, the drawing thread gets the
    # numbers its seed gives alone, and the caller's random state is left as it was.
    import threading

    X = digits[0][:400]
    params = dict(hidden_layer_sizes=(16,), max_steps=30, validation_interval=10, random_state=3, dropout=0.1,
                  neighbor_objective="umap")
    alone = CompressionVAE(**params).fit(X).transform(X)
    results, draws, done = {}, [], threading.Event()

    def fit(name):
        results[name] = CompressionVAE(**params).fit(X).transform(X)

    def draw():
        torch.manual_seed(11)
        while not done.is_set() or len(draws) < 10:
            draws.append(torch.rand(3))

    drawer = threading.Thread(target=draw)
    drawer.start()
    threads = [threading.Thread(target=fit, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    drawer.join()
    after = torch.get_rng_state()
    generator = torch.Generator().manual_seed(11)
    assert all(torch.equal(d, torch.rand(3, generator=generator)) for d in draws)
    assert torch.equal(after, generator.get_state())
    assert np.array_equal(results["a"], alone) and np.array_equal(results["b"], alone)
