"""Seeded torch generators: every draw a fit makes comes from one of its own.

torch's default generator is one per process, shared by every thread; a fit that drew from
it would change, and be changed by, whatever other threads draw. Nothing here reads or
changes it.
"""

import hashlib

import numpy as np
import torch

__all__ = [
    "GRAPH_STREAM", "INIT_STREAM", "NOISE_STREAM", "PICK_STREAM", "REPLAY_STREAM", "row_keys", "seeded_generator",
]

# What a fit's seed is combined with, for each of its streams: initial weights; training
# noise, dropout and negatives; the neighbour each batch row is paired with; the stored rows
# partial_fit replays; the rows a large fit's neighbour graph is searched among.
INIT_STREAM, NOISE_STREAM, PICK_STREAM, REPLAY_STREAM, GRAPH_STREAM = 0, 1, 2, 3, 4


def seeded_generator(*entropy, device="cpu"):
    """A ``torch.Generator`` on ``device`` seeded from the non-negative integers ``entropy``.

    The same integers give the same stream; different ones (a seed and a step, say)
    independent streams, mixed by numpy's ``SeedSequence``.
    """
    seed = int(np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed)


def row_keys(rows, seed):
    """A key in [0, 1) for each row of ``rows`` (a 2-D array, read as float32), drawn from
    its content: a BLAKE2b hash of the row's bytes, keyed by ``seed``.

    Equal rows get equal keys and distinct rows independent ones, so the rows of the
    smallest keys are a uniform sample of the distinct rows, however often each is offered.
    """
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    key = int(seed).to_bytes(8, "little", signed=False)
    digests = b"".join(hashlib.blake2b(row.tobytes(), digest_size=8, key=key).digest() for row in rows)
    return (np.frombuffer(digests, dtype="<u8") >> np.uint64(11)).astype(np.float64) * 2.0**-53
