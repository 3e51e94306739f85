"""Log directories: layout, load, resume, interruption, atomic writes, code-free loading."""

import _thread
import csv
import gc
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from cvae import CompressionVAE
from cvae import _atomic as atomic
from cvae.data.rows import Split
from cvae.training import Trainer
from cvae.spec import FORMAT_VERSION, RunSpec
from cvae.training import LogDir, load_checkpoint


@pytest.fixture
def params(fast, tmp_path):
    return dict(fast, checkpoint_interval=20, logdir=str(tmp_path / "run"))


def quiet_fit(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X)


def test_fit_writes_the_documented_files(X, params, tmp_path):
    vae = quiet_fit(CompressionVAE(**params), X)
    run = tmp_path / "run"
    expected = [".lock", "checkpoint.pt", "history.csv", "neighbors.npz", "params.json", "split.npz"]
    assert sorted(p.name for p in run.iterdir()) == expected
    saved = json.loads((run / "params.json").read_text())
    assert saved["format_version"] == FORMAT_VERSION and saved["params"]["n_components"] == 2
    assert RunSpec.from_dict(saved["spec"]) == vae.spec_ and vae.spec_.n_features == 64
    np.testing.assert_array_equal(saved["spec"]["loc"], vae.mean_)
    np.testing.assert_array_equal(saved["spec"]["scale"], vae.scale_)
    assert load_checkpoint(run / "checkpoint.pt")["format_version"] == FORMAT_VERSION
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["step"]) for r in rows] == [row["step"] for row in vae.history_]


def test_no_logdir_writes_nothing(X, fast, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quiet_fit(CompressionVAE(**fast), X)
    assert list(tmp_path.iterdir()) == []


def test_load_transforms_exactly_as_before(X, params):
    vae = quiet_fit(CompressionVAE(iaf_flow_length=2, **params), X)
    loaded = CompressionVAE.load(params["logdir"])
    assert np.array_equal(loaded.transform(X), vae.transform(X))
    assert np.array_equal(loaded.inverse_transform(np.ones((3, 2))), vae.inverse_transform(np.ones((3, 2))))
    assert loaded.get_params() == vae.get_params()
    assert loaded.history_ == vae.history_ and loaded.n_steps_ == vae.n_steps_


def test_refitting_into_a_used_logdir_needs_warm_start(X, params):
    quiet_fit(CompressionVAE(**params), X)
    with pytest.raises(FileExistsError, match="already holds a training run. Pass warm_start=True"):
        CompressionVAE(**params).fit(X)


def test_warm_start_from_logdir_continues_and_matches_uninterrupted_run(X, params, fast):
    # a schedule that is not a function of max_steps, so that the budget can be raised
    fast, params = dict(fast, learning_rate="adaptive"), dict(params, learning_rate="adaptive")
    whole = quiet_fit(CompressionVAE(**dict(fast, max_steps=100)), X)
    quiet_fit(CompressionVAE(**dict(params, max_steps=40)), X)
    resumed = quiet_fit(CompressionVAE(**dict(params, max_steps=100, warm_start=True)), X)
    assert resumed.n_steps_ == 100
    assert [row["step"] for row in resumed.history_] == [20, 40, 60, 80, 100]
    assert np.array_equal(resumed.transform(X), whole.transform(X))


def test_warm_start_checks_the_number_of_features(X, params):
    quiet_fit(CompressionVAE(**params), X)
    with pytest.raises(ValueError, match=r"X has 10 features, but CompressionVAE is expecting 64 features as input: "
                                         r"the run being continued \(in '.*run'\) was trained on them"):
        CompressionVAE(**dict(params, warm_start=True)).fit(X[:, :10])


def _interrupt_at(monkeypatch, step):
    """Stop the loop the way Ctrl-C does, deterministically at ``step``."""
    original = Trainer._train_step

    def train_step(self, batch):
        if self.step == step - 1:
            self.request_stop()
        return original(self, batch)

    monkeypatch.setattr(Trainer, "_train_step", train_step)


def test_stop_request_saves_and_returns_a_usable_model(X, params, monkeypatch):
    _interrupt_at(monkeypatch, 50)
    with pytest.warns(UserWarning, match="interrupted at step 50.*checkpoint was saved"):
        vae = CompressionVAE(**dict(params, max_steps=1000)).fit(X)
    assert vae.stop_reason_ == "interrupted" and vae.n_steps_ == 50
    assert np.isfinite(vae.transform(X)).all()
    assert CompressionVAE.load(params["logdir"]).n_steps_ == 50
    monkeypatch.undo()
    resumed = quiet_fit(CompressionVAE(**dict(params, max_steps=80, warm_start=True)), X)
    assert resumed.n_steps_ == 80


def test_ctrl_c_in_the_main_thread_stops_fit_cleanly(X, params, monkeypatch, ctrl_c_raises):
    # SIGINT as Ctrl-C sends it (simulated by _thread.interrupt_main) during a training step:
    # the step finishes, the loop stops, and the fitted model and its checkpoint are kept.
    original = Trainer._train_step

    def train_step(self, batch):
        if self.step == 30:
            _thread.interrupt_main()
        return original(self, batch)

    monkeypatch.setattr(Trainer, "_train_step", train_step)
    with pytest.warns(UserWarning, match="Training interrupted at step"):
        vae = CompressionVAE(**dict(params, max_steps=10**7, validation_interval=10**6)).fit(X)
    assert vae.stop_reason_ == "interrupted" and 30 < vae.n_steps_ < 10**7
    assert CompressionVAE.load(params["logdir"]).n_steps_ == vae.n_steps_


def test_failed_write_leaves_previous_checkpoint_intact(X, params, monkeypatch):
    vae = quiet_fit(CompressionVAE(**params), X)
    path = LogDir(params["logdir"]).file(LogDir.CHECKPOINT)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        quiet_fit(CompressionVAE(**dict(params, warm_start=True, max_steps=100)), X)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert np.array_equal(CompressionVAE.load(params["logdir"]).transform(X), vae.transform(X))


def test_truncated_checkpoint_is_a_clear_error(X, params):
    quiet_fit(CompressionVAE(**params), X)
    path = LogDir(params["logdir"]).file(LogDir.CHECKPOINT)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="Cannot read checkpoint .*checkpoint.pt: the file is truncated or corrupt"):
        CompressionVAE.load(params["logdir"])


def test_corrupt_params_file_is_named(X, params):
    quiet_fit(CompressionVAE(**params), X)
    LogDir(params["logdir"]).file(LogDir.PARAMS).write_text("{not json")
    with pytest.raises(ValueError, match="params.json: it is not valid JSON"):
        CompressionVAE.load(params["logdir"])


_FIT_FOREVER = """
import sys
from sklearn.datasets import load_digits
from cvae import CompressionVAE
X = load_digits().data[:300]
CompressionVAE(hidden_layer_sizes=(32, 16), batch_size=32, max_steps=10**7, validation_interval=5,
               checkpoint_interval=5, logdir=sys.argv[1], random_state=0).fit(X)
"""


def test_sigkill_during_fit_leaves_a_loadable_and_resumable_logdir(X, tmp_path):
    logdir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _FIT_FOREVER, str(logdir)])
    checkpoint = logdir / LogDir.CHECKPOINT
    deadline = time.monotonic() + 120
    try:
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # let it write many more checkpoints, then kill it mid-stream
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    loaded = CompressionVAE.load(logdir)
    assert loaded.n_steps_ >= 5 and loaded.n_steps_ % 5 == 0
    assert np.isfinite(loaded.transform(X)).all()
    resumed = quiet_fit(CompressionVAE(**dict(loaded.get_params(), warm_start=True, max_steps=loaded.n_steps_ + 10)),
                        X[:300])  # the killed fit's data: its saved split applies
    assert resumed.n_steps_ == loaded.n_steps_ + 10


OLD_IAF_RUN = Path(__file__).parent / "data" / "logdir_0.1.0_iaf"


def test_iaf_run_saved_by_0_1_0_loads_unchanged_and_continues(X, tmp_path, caplog):
    # Written by cvae 0.1.0, whose flow kept one MADE module per step (digits[:400], 40 steps).
    expected = np.load(OLD_IAF_RUN.parent / "logdir_0.1.0_iaf_expected.npz")
    vae = CompressionVAE.load(OLD_IAF_RUN)
    np.testing.assert_allclose(vae.transform(expected["X"]), expected["Z"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vae.inverse_transform(expected["Z"]), expected["X_hat"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(vae.score_samples(expected["X"]), expected["elbo"], rtol=1e-5)

    logdir = shutil.copytree(OLD_IAF_RUN, tmp_path / "run")
    resumed = CompressionVAE(**dict(vae.get_params(), logdir=str(logdir), warm_start=True, max_steps=60))
    with caplog.at_level(logging.WARNING, logger="cvae.training.logdir"):
        quiet_fit(resumed, X)
    assert "Adam restarts its moment estimates" in caplog.text
    assert resumed.n_steps_ == 60 and [row["step"] for row in resumed.history_] == [20, 40, 60]
    assert resumed.history_[-1]["validation_loss"] < resumed.history_[1]["validation_loss"]


def test_a_finished_run_goes_on_only_with_steps_left(X, params):
    vae = quiet_fit(CompressionVAE(**dict(params, max_steps=40)), X)
    assert vae.stop_reason_ == "max_steps" and vae.history_[-1]["learning_rate"] == 1e-5  # the floor
    with pytest.raises(ValueError, match="finished at step 40 .*leaves it nothing to train.*a larger max_steps"):
        CompressionVAE(**dict(params, max_steps=40, warm_start=True)).fit(X)  # ran 0 steps without a word
    longer = quiet_fit(CompressionVAE(**dict(params, max_steps=80, warm_start=True)), X)
    # the extra steps follow the cosine of the 80-step budget, not the floor the 40-step one ended at
    assert longer.n_steps_ == 80 and longer.history_[len(vae.history_)]["learning_rate"] > 1e-4


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
    with pytest.raises(ValueError, match=rf"checkpoint.pt: it holds non-finite or missing weights \({name}\)"):
        CompressionVAE.load(logdir)


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


def test_logdir_expands_the_home_directory_and_refuses_empty(tmp_path, monkeypatch, X, fast):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    CompressionVAE(**dict(fast, logdir="~/x")).fit(X)
    assert (tmp_path / "x" / "checkpoint.pt").is_file() and not (tmp_path / "~").exists()
    assert CompressionVAE.load("~/x").n_steps_ == 60
    with pytest.raises(ValueError, match="logdir='' names no directory"):
        CompressionVAE(**dict(fast, logdir="")).fit(X)


def test_flipped_bits_in_the_weights_are_detected(run):
    _, logdir = run
    path = logdir / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    tensor = next(iter(state["best_model"].values()))
    tensor.view(-1)[0] = tensor.view(-1)[0] + 1e-3  # what a flipped bit does to a weight
    torch.save(state, path)
    with pytest.raises(ValueError, match="checkpoint.pt is damaged: its weights do not match the digest"):
        CompressionVAE.load(logdir)


@pytest.mark.filterwarnings("error::ResourceWarning")  # no file is left open on the way
def test_an_edited_params_file_is_named_in_the_error(run):
    run = run[1]
    document = json.loads((run / "params.json").read_text())
    document["spec"]["model"]["hidden_sizes"] = [8]
    (run / "params.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"Cannot read .*: the model .*params.json describes does not match"):
        CompressionVAE.load(run)
    gc.collect()  # an unclosed file would warn when collected
