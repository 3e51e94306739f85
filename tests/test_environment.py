"""What the training loop changes in its calling thread: denormal flushing and Ctrl-C."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

from cvae.training.environment import ctrl_c_calls, flush_denormals_to_zero

DENORMAL = 1e-40  # below float32's smallest normal number, 1.18e-38


def _denormal_survives():
    return (torch.tensor([DENORMAL]) * 1.0).item() != 0.0


def _cpu_can_flush():
    flushing = not _denormal_survives()
    supported = torch.set_flush_denormal(True)
    torch.set_flush_denormal(flushing)
    return supported


def test_flushing_is_on_inside_and_restored_after():
    before = _denormal_survives()
    with flush_denormals_to_zero():
        inside = _denormal_survives()
    assert _denormal_survives() == before
    if _cpu_can_flush():
        assert inside is False


def test_flushing_is_restored_when_the_loop_raises():
    before = _denormal_survives()
    with pytest.raises(ValueError, match="boom"), flush_denormals_to_zero():
        raise ValueError("boom")
    assert _denormal_survives() == before


def test_intra_op_workers_first_started_while_flushing_do_not_flush_afterwards():
    # In a fresh process, so that the loop is what first needs the workers.
    script = textwrap.dedent(
        f"""
        import torch
        from cvae.training.environment import flush_denormals_to_zero
        torch.set_num_threads(2)
        with flush_denormals_to_zero():
            torch.zeros(2**16).add_(1.0)  # the loop's first parallel operation
        survived = (torch.full((2**20,), {DENORMAL}) * 1.0 != 0).float().mean().item()
        print(survived)
        """
    )
    survived = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert float(survived) == 1.0


def test_ctrl_c_calls_the_callback_instead_of_raising(ctrl_c_raises):
    calls = []
    with ctrl_c_calls(lambda: calls.append("stop")):
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
    assert calls == ["stop", "stop"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_handlers_other_than_pythons_default_are_left_alone(ctrl_c_raises):
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    with ctrl_c_calls(lambda: received.append("callback")):
        signal.raise_signal(signal.SIGINT)
    assert received == [signal.SIGINT]


def test_ctrl_c_is_not_touched_outside_the_main_thread(ctrl_c_raises):
    seen = []

    def in_thread():
        with ctrl_c_calls(lambda: None):
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]


def _loadavg(tmp_path, running):
    path = tmp_path / f"loadavg_{running}"
    path.write_text(f"0.50 0.40 0.30 {running}/321 4567\n")
    return path


def _tasks(tmp_path, states):
    """A /proc/self/task of threads in ``states`` (R runs, S sleeps)."""
    folder = tmp_path / f"task_{states}"
    for tid, state in enumerate(states, 100):
        (folder / str(tid)).mkdir(parents=True)
        (folder / str(tid) / "stat").write_text(f"{tid} (pt_main thread) {state} 1 2 3 4\n")
    return folder


def test_small_steps_train_on_one_thread_and_the_count_is_restored(tmp_path):
    from cvae.training.environment import SMALL_STEP_MACS, threads_for_step

    idle = _loadavg(tmp_path, 1)  # only the reading thread runs
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads_for_step(SMALL_STEP_MACS / 10, torch.device("cpu"), loadavg=idle) as threads:
            assert torch.get_num_threads() == 1 and threads == 1
        assert torch.get_num_threads() == 2
        with threads_for_step(SMALL_STEP_MACS * 10, torch.device("cpu"), loadavg=idle) as threads:
            assert torch.get_num_threads() == 2 and threads == 2  # large steps keep the caller's threads
        with threads_for_step(SMALL_STEP_MACS / 10, torch.device("cuda")) as threads:
            assert torch.get_num_threads() == 2 and threads is None  # nothing changes for other devices
        with pytest.raises(ValueError), threads_for_step(1, torch.device("cpu")):
            raise ValueError
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_large_steps_train_on_the_cpus_other_work_leaves_free(tmp_path):
    from cvae.training.environment import SMALL_STEP_MACS, free_cpus, threads_for_step

    cpus = len(os.sched_getaffinity(0))
    alone = _tasks(tmp_path, "RSS")  # the reading thread runs, two sleep
    assert free_cpus(_loadavg(tmp_path, 1), tasks=alone) == cpus
    assert free_cpus(_loadavg(tmp_path, cpus + 5), tasks=alone) == 1  # never fewer than one
    if cpus >= 2:
        assert free_cpus(_loadavg(tmp_path, 2), tasks=alone) == cpus - 1  # one other thread runs
        # this process's own spinning workers (an earlier search's) are not other work
        assert free_cpus(_loadavg(tmp_path, 3), tasks=_tasks(tmp_path, "RRRS")) == cpus
        assert free_cpus(_loadavg(tmp_path, 3), tasks=_tasks(tmp_path, "RRSS")) == cpus - 1
    assert free_cpus(_loadavg(tmp_path, 2), tasks=tmp_path / "none") == cpus - 1  # unreadable: the reader alone
    assert free_cpus(tmp_path / "missing") is None  # not Linux: unknown
    (tmp_path / "garbled").write_text("not a loadavg")
    assert free_cpus(tmp_path / "garbled") is None
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        busy = _loadavg(tmp_path, cpus + 3)  # more other running threads than CPUs
        with threads_for_step(SMALL_STEP_MACS * 10, torch.device("cpu"), loadavg=busy) as threads:
            assert torch.get_num_threads() == 1 and threads == 1
        with threads_for_step(SMALL_STEP_MACS * 10, torch.device("cpu"), loadavg=tmp_path / "missing"):
            assert torch.get_num_threads() == 2  # unknown load: the caller's threads
        # n_jobs fixes the count whatever the step and the load
        with threads_for_step(SMALL_STEP_MACS / 10, torch.device("cpu"), n_jobs=3, loadavg=busy) as threads:
            assert torch.get_num_threads() == 3 and threads == 3
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_the_loop_of_a_small_model_runs_on_one_thread(digits):
    from cvae import CompressionVAE
    from cvae.training import Callback, Trainer

    seen = []

    class Threads(Callback):
        def on_step_end(self, trainer):
            seen.append(torch.get_num_threads())

    run = Trainer.run
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        def spy(self):
            self.callbacks.append(Threads())
            return run(self)

        Trainer.run = spy
        CompressionVAE(max_steps=5, learning_rate="constant").fit(digits[0][:200])
    finally:
        Trainer.run = run
        after = torch.get_num_threads()
        torch.set_num_threads(before)
    assert seen == [1] * 5 and after == 2


def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path):
    from cvae.training.environment import native_bfloat16

    cpu = torch.device("cpu")
    for flags, expected in [("fpu avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True),
                            ("fpu avx512f avx512bw", False)]:
        (tmp_path / "cpuinfo").write_text(f"processor : 0\nflags : {flags}\n")
        assert native_bfloat16(cpu, tmp_path / "cpuinfo") is expected
    assert native_bfloat16(cpu, tmp_path / "missing") is False
    assert native_bfloat16(torch.device("meta")) is False


def test_auto_precision_picks_bfloat16_only_for_large_steps_on_native_hardware(monkeypatch):
    from cvae.training import environment
    from cvae.training.environment import AUTO_BFLOAT16_MACS, resolve_precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(environment, "native_bfloat16", lambda device: True)
    assert resolve_precision("auto", cpu, AUTO_BFLOAT16_MACS) == "bfloat16"
    assert resolve_precision("auto", cpu, AUTO_BFLOAT16_MACS - 1) == "float32"  # small steps: overheads
    assert resolve_precision("float16", cpu, 1) == "float16"  # explicit choices stand
    monkeypatch.setattr(environment, "native_bfloat16", lambda device: False)
    assert resolve_precision("auto", cpu, 10 * AUTO_BFLOAT16_MACS) == "float32"


def test_a_fit_with_auto_precision_trains_in_what_it_resolves_to(digits, monkeypatch):
    from cvae import CompressionVAE
    from cvae.training import environment, trainer

    monkeypatch.setattr(environment, "native_bfloat16", lambda device: True)
    monkeypatch.setattr(environment, "AUTO_BFLOAT16_MACS", 0)  # digits' small model counts as large
    resolved = []
    original = trainer.resolve_precision
    monkeypatch.setattr(trainer, "resolve_precision", lambda *a: resolved.append(original(*a)) or resolved[-1])
    kwargs = dict(hidden_layer_sizes=(16,), max_steps=20, validation_interval=10, random_state=0)
    auto = CompressionVAE(precision="auto", **kwargs).fit(digits[0][:300])
    bf16 = CompressionVAE(precision="bfloat16", **kwargs).fit(digits[0][:300])
    assert resolved == ["bfloat16", "bfloat16"]
    np.testing.assert_array_equal(auto.transform(digits[0][:5]), bf16.transform(digits[0][:5]))


def test_n_jobs_sets_the_threads_of_the_training_loop(monkeypatch):
    import cvae.training.trainer as trainer_module
    from cvae import CompressionVAE

    seen = []
    choose = trainer_module.threads_for_step

    def record(macs, device, n_jobs=None):
        seen.append(n_jobs)
        return choose(macs, device, n_jobs)

    monkeypatch.setattr(trainer_module, "threads_for_step", record)
    X = np.random.default_rng(0).normal(size=(200, 5)).astype(np.float32)
    before = torch.get_num_threads()
    monkeypatch.setattr("cvae._validation.os.cpu_count", lambda: 4)  # n_jobs at most the CPUs
    for n_jobs in (3, None):
        CompressionVAE(n_jobs=n_jobs, max_steps=5, device="cpu", random_state=0).fit(X)
    assert seen == [3, None] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="n_jobs"):
        CompressionVAE(n_jobs=0).fit(X)
