"""A fit around its run (cvae.training.lifecycle): which run it continues, and what it never replaces."""

import copy

import pytest

from cvae import CompressionVAE


def test_a_loaded_run_keeps_auto_and_its_clone_resolves_its_own_budget(tmp_path, X, fast):
    from sklearn.base import clone

    params = {k: v for k, v in fast.items() if k != "max_steps"}
    vae = CompressionVAE(logdir=tmp_path / "run", **params).fit(X[:300])
    loaded = CompressionVAE.load(tmp_path / "run")
    assert loaded.get_params()["max_steps"] == "auto" and loaded.max_steps_ == vae.max_steps_ == vae.n_steps_
    other = clone(loaded).set_params(logdir=None).fit(X[:150])
    assert other.max_steps_ != vae.max_steps_ and other.n_steps_ == other.max_steps_


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


def test_a_fit_that_fails_before_writing_leaves_no_directory_behind(tmp_path, fast):
    with pytest.raises(FileNotFoundError):
        CompressionVAE(**dict(fast, logdir=tmp_path / "new")).fit(tmp_path / "missing.npy")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    with pytest.raises(FileNotFoundError):
        CompressionVAE(**dict(fast, logdir=tmp_path / "old")).fit(tmp_path / "missing.npy")
    assert (tmp_path / "old").is_dir()  # a directory the user made stays


def test_a_finished_run_continues_only_with_steps_left():
    from cvae.training.lifecycle import check_unfinished

    finished = {"stop_reason": "max_steps", "step": 100}
    with pytest.raises(ValueError, match=r"The run in 'runs/a' finished at step 100 \(max_steps\), and max_steps=100 "
                       "leaves it nothing to train. To train it further, continue it with a larger max_steps"):
        check_unfinished(finished, 100, "runs/a")
    check_unfinished(finished, 101, "runs/a")  # steps left: it goes on
    check_unfinished(dict(finished, stop_reason="interrupted"), 100, None)  # an interrupted run finishes
    check_unfinished(None, 1, None)  # a new run


def test_an_opened_run_continues_the_saved_seed_and_classes(tmp_path, X, fast):
    import numpy as np

    from cvae.training.lifecycle import opened_run

    y = np.arange(len(X)) % 3
    vae = CompressionVAE(**dict(fast, random_state=7, logdir=tmp_path / "run")).fit(X, y)
    params = dict(vae.get_params(), random_state=None)
    with opened_run(params, warm_start=True) as run:
        assert run.spec == vae.spec_ and run.seed == vae.spec_.seed and run.resume["step"] == vae.n_steps_
        assert run.classes.tolist() == [0, 1, 2] and run.saved_split is not None
        # the directory is locked while the run is open
        with pytest.raises(Exception, match="Another process is fitting into log directory"):
            CompressionVAE(**dict(fast, logdir=tmp_path / "run", warm_start=True)).fit(X)
    with opened_run(dict(params, logdir=None)) as run:  # no directory: a new run, seeded afresh
        assert run.spec is None and run.resume is None and run.classes is None and run.seed >= 0
