"""Seeded torch generators: every draw a fit makes comes from one of its own.

torch's default generator is one per process, shared by every thread; a fit that drew from
it would change, and be changed by, whatever other threads draw. Nothing here reads or
changes it.
"""

import numpy as np
import torch

__all__ = ["INIT_STREAM", "NOISE_STREAM", "PICK_STREAM", "seeded_generator"]

# What a fit's seed is combined with, for each of its streams: initial weights; training
# noise, dropout and negatives; the neighbour each batch row is paired with.
INIT_STREAM, NOISE_STREAM, PICK_STREAM = 0, 1, 2


def seeded_generator(*entropy, device="cpu"):
    """A ``torch.Generator`` on ``device`` seeded from the non-negative integers ``entropy``.

    The same integers give the same stream; different ones (a seed and a step, say)
    independent streams, mixed by numpy's ``SeedSequence``.
    """
    seed = int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed)
