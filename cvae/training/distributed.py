"""Training in several processes with ``torch.distributed``, as ``torchrun`` launches them.

``torchrun`` starts one process per GPU (or per CPU slot) and tells each its place through
the environment variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``. :class:`Distributed` reads them, joins the process group (``nccl`` for
CUDA, ``gloo`` otherwise) and wraps the model in ``DistributedDataParallel``, which
averages gradients across processes after every backward pass. Nothing here sends data
of its own making except a few sums (validation totals and the stop flag), the seed, the
neighbour graph, which the main process builds once for all, and the embedding of each
batch, from which the neighbour term draws its negatives across processes.
"""

import inspect
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional  # noqa: F401 (differentiable collectives)
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Distributed"]

_BUFFER_SYNC_OPTION = (
    "forward_sync_buffers"
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else "broadcast_buffers"
)


@dataclass(frozen=True)
class Distributed:
    """Where this process stands in a distributed run; one process by default.

    Parameters
    ----------
    rank : int, default=0
        This process's index among all processes.
    world_size : int, default=1
        Number of processes.
    local_rank : int, default=0
        This process's index on its host: the GPU it uses.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls):
        """The layout ``torchrun`` set in the environment, or one process when it did not."""
        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        if world_size > 1 and not dist.is_available():
            raise RuntimeError(f"WORLD_SIZE={world_size} is set, but this PyTorch build has no torch.distributed.")
        return cls(rank, world_size, int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def enabled(self):
        return self.world_size > 1

    @property
    def is_main(self):
        """The process that writes files and reports progress."""
        return self.rank == 0

    def device(self, device):
        """This process's own GPU when ``device`` is CUDA; ``device`` otherwise."""
        if self.enabled and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def join(self, device):
        """Join the process group (once per process) with the backend that suits ``device``."""
        if not self.enabled or dist.is_initialized():
            return
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")

    def wrap(self, model):
        """``model`` wrapped for data-parallel training, or ``model`` itself in one process."""
        if not self.enabled:
            return model
        device = next(model.parameters()).device
        # The buffers (normalization, autoregressive masks) are equal everywhere and never
        # change: no need to send them before every forward pass. PyTorch 2.13 renamed the
        # option that says so.
        no_buffer_sync = {_BUFFER_SYNC_OPTION: False}
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       **no_buffer_sync)

    def sum(self, tensor):
        """Sum ``tensor`` over all processes, in place; returns it."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def any(self, flag, device):
        """True on every process when ``flag`` is true on any of them."""
        if not self.enabled:
            return flag
        return bool(self.sum(torch.tensor([float(flag)], device=device)).item() > 0)

    def gather_rows(self, tensor):
        """Every process's rows of ``tensor`` stacked in rank order, and the position of
        this process's first row. Differentiable: the gradient of each row flows back to
        the process it came from. Processes may hold different numbers of rows."""
        sizes = [torch.zeros(1, dtype=torch.int64, device=tensor.device) for _ in range(self.world_size)]
        dist.all_gather(sizes, torch.tensor([len(tensor)], device=tensor.device))
        sizes = [int(size) for size in sizes]
        padded = torch.nn.functional.pad(tensor, (0, 0, 0, max(sizes) - len(tensor)))
        parts = _AllGather.apply(padded)
        return torch.cat([part[:size] for part, size in zip(parts, sizes)]), sum(sizes[: self.rank])

    def share(self, build, device):
        """``build()`` (a 2-D int64 array) run by the main process alone and sent to every
        process, through ``device`` (the process group's device)."""
        if not self.enabled:
            return build()
        array = build() if self.is_main else None
        shape = torch.tensor(array.shape if self.is_main else (0, 0), dtype=torch.int64, device=device)
        dist.broadcast(shape, src=0)
        if self.is_main:
            tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)
        else:
            tensor = torch.empty(tuple(shape.tolist()), dtype=torch.int64, device=device)
        dist.broadcast(tensor, src=0)
        return tensor.cpu().numpy()

    def broadcast(self, obj):
        """The main process's ``obj``, on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


class _AllGather(torch.autograd.Function):
    """Every process's equally shaped tensor, in rank order, with the gradient of each part
    summed over the processes and returned to the process it came from (what
    ``torch.distributed.nn.functional.all_gather`` did, which torch now deprecates)."""

    @staticmethod
    def forward(ctx, tensor):
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads):
        grads = torch.stack(grads)
        dist.all_reduce(grads, op=dist.ReduceOp.SUM)
        return grads[dist.get_rank()]
