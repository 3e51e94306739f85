"""Faults injected into fits: kill -9 at random moments, two writers, a full disk.

Each ends with a log directory that loads, whose model and params.json agree, or with a
clear error; nothing trained before the fault is lost.
"""

import errno
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cvae import CompressionVAE
from cvae.training import LogDir, LogDirLocked

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL"),
]

# A driver that imports cvae once, then forks one child per fit (so each kill costs no
# import of torch) and kills it with SIGKILL at a random moment. Before each next fit it
# checks what the killed one left: the directory loads, the loaded model embeds into as many
# dimensions as params.json says, and the step count never goes back.
_KILL_LOOP = textwrap.dedent(
    """
    import json, os, random, signal, sys, time
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from cvae.estimator import CompressionVAE  # torch loaded before the forks
    from cvae.training import LogDir

    torch.set_num_threads(1)  # no OpenMP team in the parent, which fork could not copy
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo (seconds)


    def kill_loop(logdir, kills, seed, kind):
        X = load_digits().data[:300].astype(np.float32)
        data = X
        extra = {}
        if kind == "sparse-counts":  # a CSR matrix under a count likelihood
            import scipy.sparse as sp
            data = sp.csr_matrix(X)
            extra = {"likelihood": "poisson"}  # digits' pixels are whole numbers from 0 to 16
        elif kind == "anndata":  # an .h5ad file, streamed
            import anndata
            data = os.path.join(os.path.dirname(logdir), "cells.h5ad")
            anndata.AnnData(X).write_h5ad(data)
        y = load_digits().target[:300] if kind in ("labels", "partial") else None
        settings = dict(n_components=3, hidden_layer_sizes=(32, 16), batch_size=32, validation_interval=5,
                        checkpoint_interval=5, logdir=logdir, random_state=0, **extra)
        if kind == "partial":  # a finished fit on the first 150 rows, then updates on the others
            CompressionVAE(max_steps=20, **settings).fit(data[:150], y[:150])
        random.seed(seed)
        steps, outcomes = [], []
        for kill in range(kills):
            pid = os.fork()
            if pid == 0 and kind == "partial":  # the child updates, again and again
                vae = CompressionVAE.load(logdir)
                while True:
                    vae.partial_fit(data[150:], y[150:])
            elif pid == 0:  # the child fits, continuing whatever the last child saved
                CompressionVAE(max_steps=10**7, warm_start=True, **settings).fit(data, y)
                os._exit(0)
            time.sleep(random.uniform(0.05, 0.8))
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            if not LogDir(logdir).has_run():
                outcomes.append("no checkpoint yet")
                continue
            vae = CompressionVAE.load(logdir)
            saved = json.load(open(os.path.join(logdir, "params.json")))
            Z = vae.transform(X[:20])
            assert Z.shape == (20, saved["spec"]["model"]["n_latent"]) == (20, saved["params"]["n_components"])
            assert np.isfinite(Z).all()
            assert not steps or vae.n_steps_ >= steps[-1], (steps, vae.n_steps_)
            if y is not None:  # what the run keeps beside the trainer survives a kill after a checkpoint
                assert vae.classes_.tolist() == list(range(10))
            if kind == "partial":
                kept = vae._checkpoint
                assert kept.get("landmarks") is not None and kept.get("reservoir") is not None, sorted(kept)
            steps.append(vae.n_steps_)
            outcomes.append("loaded")
        return {"steps": steps, "outcomes": outcomes}


    # each KIND:KILLS in a folder of its own under the first argument, all in this one process
    root, seed = sys.argv[1], int(sys.argv[2])
    reports = {}
    for item in sys.argv[3].split(","):
        kind, kills = item.split(":")
        reports[kind] = kill_loop(os.path.join(root, kind, "run"), int(kills), seed, kind)
    print(json.dumps(reports))
    """
)


# Kinds run in one driver per group (each driver imports torch once).
_KILL_GROUPS = {"dense-and-labels": {"dense": 4, "labels": 3},
                "sparse-anndata-partial": {"sparse-counts": 3, "anndata": 3, "partial": 3}}


@pytest.mark.parametrize("group", sorted(_KILL_GROUPS))
def test_kill_9_at_random_moments_never_loses_or_breaks_a_run(tmp_path, digits, group):
    kinds = dict(_KILL_GROUPS[group])
    if "anndata" in kinds and importlib.util.find_spec("anndata") is None:
        del kinds["anndata"]
    for kind in kinds:
        (tmp_path / kind).mkdir()
    argument = ",".join(f"{kind}:{kills}" for kind, kills in kinds.items())
    result = subprocess.run([sys.executable, "-c", _KILL_LOOP, str(tmp_path), "0", argument],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = json.loads(result.stdout.strip().splitlines()[-1])
    for kind, kills in kinds.items():
        _check_after_kills(tmp_path / kind, reports[kind], kills, kind, digits)


def _check_after_kills(folder, report, kills, kind, digits):
    logdir = folder / "run"
    assert len(report["outcomes"]) == kills  # each kill followed by a check
    assert report["outcomes"].count("loaded") >= kills * 3 // 4 and report["steps"][-1] > report["steps"][0]
    vae = CompressionVAE.load(logdir)
    X = digits[0][:300]
    if kind == "sparse-counts":
        import scipy.sparse as sp

        X = sp.csr_matrix(X)
    elif kind == "anndata":
        X = folder / "cells.h5ad"
    if kind == "partial":  # the next update replays the run's sample of earlier rows
        from cvae.training.stored import replay_source

        assert replay_source(vae._checkpoint, vae.spec_) is not None
        vae.partial_fit(X[150:], digits[1][150:300])
    else:
        y = digits[1][:300] if kind == "labels" else None
        vae.set_params(max_steps=vae.n_steps_ + 10, warm_start=True).fit(X, y)  # the run continues
    # a fit killed mid-write may have left a temporary file: the next fit removed it
    assert not list(logdir.glob(".*.tmp"))
    assert vae.transform(digits[0][:5]).shape == (5, 3)


_FIT = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from cvae import CompressionVAE
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # its first use imports torch._dynamo (seconds)
    X = load_digits().data[:300].astype(np.float32)
    if len(sys.argv) > 4:  # started beside the first fit: begin once that fit holds the directory
        while not os.path.exists(os.path.join(sys.argv[1], sys.argv[4])):
            time.sleep(0.05)
    CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=int(sys.argv[2]), validation_interval=50,
                   checkpoint_interval=50, logdir=sys.argv[1], random_state=int(sys.argv[3]),
                   learning_rate="constant").fit(X)
    """
)


def test_a_second_process_cannot_fit_into_a_directory_in_use(tmp_path):
    logdir = tmp_path / "run"
    # both start at once (each start takes seconds); the second fits once the first has checkpointed
    first = subprocess.Popen([sys.executable, "-c", _FIT, str(logdir), "100000", "0"], stderr=subprocess.PIPE,
                             text=True)
    try:
        second = subprocess.run([sys.executable, "-c", _FIT, str(logdir), "100", "1", "checkpoint.pt"],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert "LogDirLocked: Another process is fitting into log directory" in second.stderr
    finally:
        first.kill()
        first.wait()
    # what the first one wrote is intact and its own
    vae = CompressionVAE.load(logdir)
    assert vae.spec_.seed == LogDir(logdir).read_params()[1].seed and vae.random_state == 0


def test_the_lock_is_held_for_the_whole_fit_and_released_after(tmp_path, digits, fast):
    logdir = LogDir(tmp_path / "run")
    with logdir.locked():
        with pytest.raises(LogDirLocked, match="Another process is fitting"):
            with LogDir(tmp_path / "run").locked():  # another open file description: as another process
                pass
    CompressionVAE(**dict(fast, logdir=str(logdir.path))).fit(digits[0][:300])  # released: a fit may take it


@pytest.fixture
def disk_full_after(monkeypatch):
    """Make every fsync after the first ``n`` fail as on a full disk."""

    def arm(n):
        calls = {"n": 0}
        real = os.fsync

        def fsync(fd):
            calls["n"] += 1
            if calls["n"] > n:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd)

        monkeypatch.setattr("cvae._atomic.os.fsync", fsync)

    return arm


def test_a_full_disk_keeps_the_last_complete_checkpoint(tmp_path, digits, fast, disk_full_after):
    X = digits[0][:300]
    params = dict(fast, logdir=str(tmp_path / "run"), checkpoint_interval=20)
    first = CompressionVAE(**params).fit(X)
    before = first.transform(X)
    disk_full_after(1)  # params.json is written, the first checkpoint of the resumed fit is not
    resumed = CompressionVAE(**dict(params, warm_start=True, max_steps=120))
    with pytest.raises(OSError, match="No space left on device"):
        resumed.fit(X)
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no half-written file is left
    loaded = CompressionVAE.load(tmp_path / "run")
    assert loaded.n_steps_ == 60
    np.testing.assert_array_equal(loaded.transform(X), before)
    assert json.loads((tmp_path / "run" / "params.json").read_text())["spec"] == loaded.spec_.to_dict()


def test_a_full_disk_before_any_checkpoint_is_a_clear_error(tmp_path, digits, fast, disk_full_after):
    disk_full_after(0)
    with pytest.raises(OSError, match="No space left on device"):
        CompressionVAE(**dict(fast, logdir=str(tmp_path / "run"))).fit(digits[0][:300])
    with pytest.raises(FileNotFoundError, match="No parameter file"):
        CompressionVAE.load(tmp_path / "run")


_TRANSFORM_TO_NPY = textwrap.dedent(
    """
    import sys
    import numpy as np
    from cvae.estimator import CompressionVAE
    from cvae.files import transform_to_npy

    vae = CompressionVAE.load(sys.argv[1])
    print("ready", flush=True)
    transform_to_npy(vae, sys.argv[2], sys.argv[3], chunk_size=7)
    """
)


def test_kill_9_during_transform_to_npy_keeps_the_existing_output(tmp_path, digits):
    import signal

    X = np.tile(digits[0], (40, 1))  # 71,880 rows: long enough to be killed while writing
    np.save(tmp_path / "X.npy", X)
    CompressionVAE(hidden_layer_sizes=(32, 16), max_steps=5, neighbor_weight=0,
                   logdir=tmp_path / "run").fit(digits[0])
    out = tmp_path / "out.npy"
    np.save(out, np.arange(6.0))
    before = out.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", _TRANSFORM_TO_NPY, str(tmp_path / "run"), str(tmp_path / "X.npy"),
                              str(out)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(0.5)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert out.read_bytes() == before  # the old output, whole; never a torn one
