"""What the training loop changes in its calling thread: denormal flushing and Ctrl-C."""

import signal
import subprocess
import sys
import textwrap
import threading

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


def test_small_steps_train_on_one_thread_and_the_count_is_restored():
    from cvae.training.environment import SMALL_STEP_MACS, threads_for_step

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads_for_step(SMALL_STEP_MACS / 10, torch.device("cpu")):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with threads_for_step(SMALL_STEP_MACS * 10, torch.device("cpu")):
            assert torch.get_num_threads() == 2  # large steps keep the caller's threads
        with threads_for_step(SMALL_STEP_MACS / 10, torch.device("cuda")):
            assert torch.get_num_threads() == 2  # nothing changes for other devices
        with pytest.raises(ValueError), threads_for_step(1, torch.device("cpu")):
            raise ValueError
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
