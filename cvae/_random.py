"""Seeded generators: every draw the package makes comes from a named stream here.

torch's default generator is one per process, shared by every thread; a fit that drew from
it would change, and be changed by, whatever other threads draw. Nothing here reads or
changes it, nor numpy's global state.

``STREAMS`` lists each draw with the integers its generator is seeded from. Streams named
since the first release carry a tag of their own (0-5), so that no two draw alike. Those
that came before keep the entropy they had: the seed alone, or the seed plus the epoch or
step for torch's ``manual_seed``, so that a seed gives the models it gave. ``neighbors/``
imports nothing of the package: its seeded draws come from a generator its caller takes
here, its one fixed sample ("refine") is checked against this table by the tests, and the
solvers it calls (PCA, pynndescent) get a fixed ``random_state=0``.
"""

import hashlib

import numpy as np
import torch

__all__ = ["STREAMS", "generator", "rng", "row_keys"]

_MIXED, _SUMMED, _NUMPY = "torch, mixed by SeedSequence", "torch, seeded by the sum", "numpy"

# name: (kind of generator, the integers it is seeded from, what it draws)
STREAMS = {
    "init": (_MIXED, lambda seed: (seed, 0), "initial weights"),
    "noise": (_MIXED, lambda seed, rank, step: (seed, 1, rank, step),
              "training noise, dropout and negatives from a step on"),
    "pick": (_MIXED, lambda seed, rank, epoch, start: (seed, 2, rank, epoch, start),
             "the neighbour each row of a batch is paired with"),
    "replay": (_NUMPY, lambda seed, step: (seed, step, 3), "the stored rows partial_fit replays"),
    "graph": (_NUMPY, lambda seed: (seed, 4), "the rows a large fit's neighbour graph is searched among"),
    "validation": (_MIXED, lambda rank: (0, rank), "the validation loss's fixed noise"),
    "split": (_NUMPY, lambda seed: (seed,), "the train/validation split"),
    "landmarks": (_NUMPY, lambda seed: (seed,), "the training rows a fit keeps in place for partial_fit"),
    "epoch_order": (_SUMMED, lambda seed, epoch: (seed + epoch,), "the order of an epoch's rows"),
    "block_order": (_NUMPY, lambda seed, epoch, rank, group: (seed, epoch, rank, group),
                    "the order of streamed rows within a group of blocks"),
    "landmark_picks": (_SUMMED, lambda seed, step: (seed + step,), "the landmarks held in place at a step"),
    "label_graph": (_NUMPY, lambda seed: (seed,), "the neighbours labels replace in the graph"),
    "projection": (_NUMPY, lambda seed: (seed,), "the rows the placement's principal components are fitted on"),
    "refine": (_SUMMED, lambda: (0,), "the training rows that repel a placed row (embeddings of over 2-D)"),
    "score": (_SUMMED, lambda: (0,), "score_samples' fixed draws"),
    "calibration": (_NUMPY, lambda: (0,), "the labelled rows predict's smoothing is chosen on"),
    "figures": (_NUMPY, lambda: (0,), "the validation rows TensorBoard's figures show"),
    "sample_codes": (_SUMMED, lambda seed: (seed,), "sample's latent codes"),
    "sample_counts": (_NUMPY, lambda seed: (seed,), "sample's counts drawn from the decoded distribution"),
    "classifier_picks": (_MIXED, lambda seed, step: (seed, 5, step),
                         "the labelled rows the classifier trains on at a step"),
}


def _entropy(name, keys, kind):
    if name not in STREAMS:
        raise KeyError(f"no random stream named {name!r}; the streams are {', '.join(STREAMS)}")
    stream_kind, entropy, _ = STREAMS[name]
    if (stream_kind == _NUMPY) != (kind == _NUMPY):
        raise TypeError(f"the {name!r} stream is drawn by {stream_kind}")
    return stream_kind, [int(k) for k in entropy(*keys)]


def generator(name, *keys, device="cpu"):
    """The ``torch.Generator`` on ``device`` of stream ``name`` (in ``STREAMS``) for the
    non-negative integers ``keys`` (the seed, then what the stream is keyed by)."""
    kind, entropy = _entropy(name, keys, _MIXED)
    seed = entropy[0] if kind == _SUMMED else int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])
    return torch.Generator(device=device).manual_seed(seed)


def rng(name, *keys):
    """The ``numpy.random.Generator`` of stream ``name`` (in ``STREAMS``) for ``keys``."""
    return np.random.default_rng(_entropy(name, keys, _NUMPY)[1])


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
