"""The training worker thread and the trainer's stop/rollback mechanics."""

import pytest
import torch

from cvae.training.worker import call_in_flush_to_zero_thread

DENORMAL = 1e-40  # below float32's smallest normal number, 1.18e-38


def _denormal_survives():
    return (torch.tensor([DENORMAL]) * 1.0).item() != 0.0


def test_worker_flushes_denormals_without_touching_the_caller():
    before = _denormal_survives()
    inside = call_in_flush_to_zero_thread(_denormal_survives, on_interrupt=lambda: None)
    if torch.set_flush_denormal(False):  # this CPU supports flushing at all
        assert inside is False
    assert _denormal_survives() == before


def test_worker_uses_the_callers_thread_count():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert call_in_flush_to_zero_thread(torch.get_num_threads, on_interrupt=lambda: None) == 1
    finally:
        torch.set_num_threads(previous)


def test_worker_reraises_errors_in_the_caller():
    def fail():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        call_in_flush_to_zero_thread(fail, on_interrupt=lambda: None)
