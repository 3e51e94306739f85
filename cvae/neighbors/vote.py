"""Label transfer by a vote: each row's class counts among its nearest labelled rows in the
embedding, smoothed towards uniform by as much as the labelled rows' own leave-one-out
votes call for (what :meth:`cvae.CompressionVAE.predict_proba` gives for a model without
a classifier)."""

import numpy as np
import torch

from .search import nearest_rows

__all__ = ["class_votes", "labelled_reference", "vote_smoothing"]


def class_votes(queries, reference, codes, k, n_classes, exclude=None):
    """Each query's count of each class among its ``k`` nearest ``reference`` rows (class
    ``codes``), found by :func:`cvae.neighbors.search.nearest_rows` among rows centred on
    the reference's mean; with ``exclude`` (a reference row per query), that row left out."""
    votes = np.zeros((len(queries), n_classes))
    if len(queries) == 0:
        return votes
    k = min(k, len(reference) - (exclude is not None))
    mean = reference.mean(dim=0)
    nearest = nearest_rows(queries - mean, reference - mean, k + (exclude is not None))[1].numpy()
    if exclude is not None:  # found one more: drop the row itself, or the farthest where ties hid it
        own = nearest == exclude[:, None]
        own[~own.any(axis=1), -1] = True
        nearest = nearest[~own].reshape(len(nearest), k)
    np.add.at(votes, (np.arange(len(queries))[:, None], codes[nearest.astype(np.int64)]), 1.0)
    return votes


# The smoothing of the vote is chosen among these, by the leave-one-out log-loss of at most
# _CALIBRATION_ROWS labelled rows (drawn from a fixed stream).
_SMOOTHING = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
_CALIBRATION_ROWS = 2000


def vote_smoothing(reference, codes, k, n_classes, rng):
    """The ``alpha`` of ``(votes + alpha / n_classes) / (k + alpha)`` that gives the labelled
    rows' own votes (each row's ``k`` nearest other labelled rows, for at most
    ``_CALIBRATION_ROWS`` of them, drawn by the numpy Generator ``rng``) the least
    log-loss: the smoothing that calibrates the vote on this model's embedding. 1 with
    fewer than two labelled rows."""
    if len(codes) < 2:
        return 1.0
    chosen = np.sort(rng.permutation(len(codes))[:_CALIBRATION_ROWS])
    votes = class_votes(reference[torch.from_numpy(chosen)], reference, codes, k, n_classes, exclude=chosen)
    own = votes[np.arange(len(chosen)), codes[chosen]]
    total = votes.sum(axis=1)
    losses = [-np.mean(np.log((own + a / n_classes) / (total + a))) for a in _SMOOTHING]
    return float(_SMOOTHING[int(np.argmin(losses))])


def labelled_reference(module, labelled, device, chunk_rows=4096):
    """The embedding by ``module`` (a float32 tensor, on the CPU) of the labelled rows a run
    stored (``labelled``: :func:`cvae.training.stored.labelled_rows`) and their class codes,
    what :meth:`cvae.CompressionVAE.predict` votes with; ``None`` when there are none."""
    labels = None if labelled is None else labelled.get("labels")
    if labels is None or not bool((labels >= 0).any()):
        return None
    rows = labelled["rows"][labels >= 0]
    with torch.inference_mode():
        embedding = torch.cat([module.embed(block.to(device)).float().cpu() for block in rows.split(chunk_rows)])
    return embedding, labels[labels >= 0].numpy()
