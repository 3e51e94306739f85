"""What the training loop takes from the machine: threads, denormals, Ctrl-C, precision.

Adam's second-moment estimates of parameters whose gradients fade (saturated Bernoulli
outputs such as MNIST's always-black border pixels, dead ReLU units) sink into the denormal
range, where x86 arithmetic is many times slower, so the loop flushes denormals to zero.
``torch.set_flush_denormal`` only sets the calling thread's flags; intra-op worker threads
copy them when they are created and keep them.

The loop runs in the calling thread rather than in a fresh one that could flush in all its
workers: a second thread brings a second team of OpenMP workers, and with more OpenMP
threads than cores GNU OpenMP stops its workers spinning between parallel regions, and
steps take far longer (benchmarks/README.md, "How the defaults were chosen").
"""

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

import torch

__all__ = [
    "ctrl_c_calls",
    "flush_denormals_to_zero",
    "free_cpus",
    "native_bfloat16",
    "resolve_precision",
    "threads_for_step",
    "step_multiply_adds",
]

# Below this many multiply-adds per training step (forward, about a third of the step's
# arithmetic), a second CPU thread does not speed a step up, and it makes the step wait for a
# sibling that another busy process may keep from running (benchmarks/README.md, "Threads").
SMALL_STEP_MACS = 50e6

# precision="auto" trains in bfloat16 from this many multiply-adds per step: MNIST's default
# model (about 580M at batch 512) takes half the time, the digits neighbour model (about 60M)
# gains nothing measurable (benchmarks/README.md, "bfloat16").
AUTO_BFLOAT16_MACS = 200e6

_DENORMAL = 1e-40  # below float32's smallest normal number, 1.18e-38


def _flushes_denormals():
    """Whether the calling thread flushes denormals (a one-element product runs in it)."""
    return (torch.tensor([_DENORMAL]) * 1.0).item() == 0.0


def _start_intra_op_workers():
    # An operation over more elements than one thread's share (ATen's grain, 32768) runs in
    # parallel, creating the intra-op workers now if they do not exist yet: workers created
    # while flushing is on would keep flushing after the loop, in the caller's later work.
    torch.zeros(2**16).add_(1.0)


@contextlib.contextmanager
def flush_denormals_to_zero():
    """Flush denormal floats to zero in the calling thread for the duration, then restore.

    Intra-op worker threads are left as they were, so on a CPU with ``n`` threads the
    calling thread's share of each parallel operation (about ``1 / n``) flushes.
    """
    previous = _flushes_denormals()
    _start_intra_op_workers()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(previous)


@contextlib.contextmanager
def ctrl_c_calls(callback):
    """For the duration, Ctrl-C (SIGINT) calls ``callback()`` instead of raising KeyboardInterrupt.

    Only where Python's default handler is installed and the caller is the main thread,
    the one that receives signals; elsewhere nothing changes. A second Ctrl-C calls
    ``callback`` again.
    """
    in_main_thread = threading.current_thread() is threading.main_thread()
    if not in_main_thread or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: callback())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def step_multiply_adds(model, batch_size):
    """Multiply-adds of one forward pass of ``model``'s linear layers over ``batch_size`` rows."""
    weights = sum(p.numel() for name, p in model.named_parameters() if p.dim() >= 2)
    return batch_size * weights


def free_cpus(loadavg="/proc/loadavg", samples=3, interval=0.005, tasks="/proc/self/task"):
    """CPUs this process may run on that no other process's runnable thread holds, at least
    1; None where the kernel does not say (no Linux ``/proc/loadavg``).

    The kernel's count of runnable threads is read ``samples`` times, ``interval`` seconds
    apart, less this process's own runnable threads (``tasks``: the reading thread, and
    workers of the fit's own earlier work that still spin, which would otherwise halve a
    fit's threads after its graph search), and the least is kept, so that a thread that
    runs for an instant is not counted.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    others = []
    for sample in range(samples):
        try:
            running = int(Path(loadavg).read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            return None
        others.append(running - _own_running(tasks))
        if sample + 1 < samples:
            time.sleep(interval)
    return max(1, cpus - max(0, min(others)))


def _own_running(tasks):
    """This process's runnable threads (state R in ``tasks/*/stat``), at least the caller."""
    running = 0
    for stat in Path(tasks).glob("*/stat"):
        try:  # the state follows the command name, which ends at the last ")"
            running += stat.read_text().rpartition(")")[2].split()[0] == "R"
        except (OSError, IndexError):
            continue
    return max(1, running)


@contextlib.contextmanager
def threads_for_step(macs, device, n_jobs=None, loadavg="/proc/loadavg"):
    """For the duration, the CPU threads a step of ``macs`` multiply-adds trains on; yields
    their number (None on other devices).

    ``n_jobs`` threads when it is given. Otherwise one thread when the step is small, and
    else the caller's thread count, lowered to the CPUs that other running threads leave
    free (:func:`free_cpus`): threads beyond those wait at every step for siblings that
    are not running (benchmarks/README.md, "Threads").
    """
    if device.type != "cpu":
        yield None
        return
    previous = torch.get_num_threads()
    if n_jobs is not None:
        threads = n_jobs
    elif previous == 1 or macs < SMALL_STEP_MACS:
        threads = 1
    else:
        free = free_cpus(loadavg)
        threads = previous if free is None else min(previous, free)
    if threads != previous:
        torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        if threads != previous:
            torch.set_num_threads(previous)


def native_bfloat16(device, cpuinfo="/proc/cpuinfo"):
    """Whether ``device`` multiplies bfloat16 natively: a CUDA GPU that supports it, or a CPU
    whose flags (read from ``cpuinfo``; none where it cannot be read) include AVX-512 BF16
    or AMX. Elsewhere bfloat16 products are emulated and no faster than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision, device, macs):
    """``precision="auto"`` made concrete for a training step of ``macs`` multiply-adds on
    ``device``: ``"bfloat16"`` where the device multiplies it natively and the step has at
    least ``AUTO_BFLOAT16_MACS`` (smaller steps are bound by overheads, which casts only add),
    else ``"float32"``. Other values are returned unchanged."""
    if precision != "auto":
        return precision
    return "bfloat16" if macs >= AUTO_BFLOAT16_MACS and native_bfloat16(device) else "float32"
