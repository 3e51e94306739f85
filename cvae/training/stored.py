"""What a run stores beside its weights: the landmarks a fit keeps in place for
:meth:`partial_fit`, the uniform sample of its rows that updates replay (the reservoir), and
the neighbour placement's reference (checked when read back: :mod:`cvae.training.state`).
``store_rows=False`` stores none of them (docs/data.md, "What a model file holds")."""

import numpy as np
import torch

from .. import _random
from .._random import row_keys
from ..data.rows import rows_within, take_rows
from ..neighbors.placement import NeighborReference
from ..spec import build_module
from .state import checked_landmarks, checked_reservoir

__all__ = [
    "LANDMARKS", "LANDMARK_BYTES", "RESERVOIR_BYTES", "RESERVOIR_ROWS", "fit_keeps", "keeps_reference", "labelled_rows",
    "replay_source", "reservoir_reference", "sampled_rows",
]

# Training rows a fit stores, with their embedding, for partial_fit to keep in place, and
# the most bytes they take as float32 (wide rows: fewer of them).
LANDMARKS = 1024
LANDMARK_BYTES = 2**24
# Rows partial_fit keeps, a uniform sample of every row it has trained on, to place unseen
# rows by them (placement), and the most bytes they take as float32.
RESERVOIR_ROWS = 20_000
RESERVOIR_BYTES = 2**27


def fit_keeps(plan, spec, state, data, device):
    """What a fit stores beside the trainer's ``state``: with ``store_rows``, its landmarks
    and a sample of its training rows; with the neighbour placement, the reference of its
    rows (``data``, those it trained and validated on)."""
    kept = {}
    if plan.store_rows:
        kept["landmarks"] = fit_landmarks(spec, state, data, device, plan.eval_batch_size)
        kept["reservoir"] = sampled_rows(None, data.train.source, data.train.indices, spec.seed,
                                         plan.eval_batch_size)
        if data.train.labels is not None:
            kept["labelled"] = labelled_rows(None, data, spec.seed, plan.eval_batch_size)
    if keeps_reference(plan, data.train.source):
        kept["reference"] = training_reference(spec, state, data, device).state_dict()
    return kept


def fit_landmarks(spec, state, data, device, chunk_rows):
    """Up to ``LANDMARKS`` training rows (fewer for wide rows: ``LANDMARK_BYTES`` in all),
    drawn with the run's seed, and their embedding by the best weights: what
    ``partial_fit`` keeps in place. Read and embedded ``chunk_rows`` rows at a time."""
    model = build_module(spec, state["best_model"]).to(device).eval()
    indices = data.train.indices
    n = min(LANDMARKS, rows_within(LANDMARK_BYTES, spec.n_inputs))
    chosen = indices[np.sort(_random.rng("landmarks", spec.seed).permutation(len(indices))[:n])]
    rows, embedding = [], []
    for part in range(0, len(chosen), chunk_rows):
        block = torch.from_numpy(np.ascontiguousarray(take_rows(data.train.source, chosen[part:part + chunk_rows])))
        with torch.no_grad():
            embedding.append(model.embed(block.to(device)).float().cpu())
        rows.append(block)
    return {"rows": torch.cat(rows), "embedding": torch.cat(embedding)}


def sampled_rows(previous, source, indices, seed, chunk_rows, labels=None):
    """``previous`` (or nothing) and rows ``indices`` of ``source``, sampled down to
    ``RESERVOIR_ROWS`` distinct rows (fewer for wide rows): each row's key comes from its
    content (:func:`cvae._random.row_keys`), and the rows of smallest keys stay, a uniform
    sample of the distinct rows seen, whatever was offered twice (rows passed again, rows
    replayed). Read ``chunk_rows`` rows at a time (fewer for wide rows); kept in the order
    they came. With class codes (``labels``, one per index, -1 unlabelled, or a
    ``previous`` that has them), the sample keeps each row's code, a label given to any
    copy of the row: what :meth:`cvae.CompressionVAE.predict` votes with."""
    cap = min(RESERVOIR_ROWS, rows_within(RESERVOIR_BYTES, source.n_features))
    chunk_rows = min(chunk_rows, cap)  # wide rows (sparse ones densified): at most the sample's bytes at once
    rows = np.empty((0, source.n_features), np.float32) if previous is None else previous["rows"].numpy()
    keys = np.empty(0) if previous is None else previous["keys"].numpy()
    labelled = labels is not None or (previous is not None and previous.get("labels") is not None)
    codes = _codes(previous, len(rows))
    for part in range(0, len(indices), chunk_rows):
        block = take_rows(source, indices[part:part + chunk_rows])
        rows, keys = np.concatenate([rows, block]), np.concatenate([keys, row_keys(block, seed)])
        if not labelled:
            _, first = np.unique(keys, return_index=True)  # sorted by key: the smallest first
            keep = np.sort(first[:cap])
            rows, keys = rows[keep], keys[keep]
            continue
        given = np.full(len(block), -1) if labels is None else np.asarray(labels[part:part + chunk_rows])
        codes = np.concatenate([codes, given])
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        best = np.full(len(distinct), -1)
        np.maximum.at(best, inverse.reshape(-1), codes)  # a labelled copy labels the row
        keep = np.sort(first[:cap])
        rows, keys, codes = rows[keep], keys[keep], best[inverse.reshape(-1)][keep]
    sample = {"rows": torch.from_numpy(rows), "keys": torch.from_numpy(keys)}
    if labelled:
        sample["labels"] = torch.from_numpy(codes.astype(np.int64))
    return sample


def labelled_rows(previous, data, seed, chunk_rows):
    """``previous`` (the labelled rows a run stored, or ``None``) and the labelled rows of
    ``data`` (a :class:`cvae.data.preparation.FitData`: its training rows, and the
    validation rows held out of them), sampled as :func:`sampled_rows` samples, with their
    class codes: what :meth:`cvae.CompressionVAE.predict` votes with. Kept apart from the
    reservoir, so that a few labels among many rows are all kept."""
    parts = [rows for rows in [data.train] + ([data.valid] if data.held_out is not None else [])
             if rows.labels is not None]
    if not parts:
        return previous
    indices = np.concatenate([rows.indices[rows.labels >= 0] for rows in parts])
    codes = np.concatenate([rows.labels[rows.labels >= 0] for rows in parts])
    if len(indices) == 0:
        return previous
    order = np.argsort(indices, kind="stable")
    return sampled_rows(previous, data.train.source, indices[order], seed, chunk_rows, codes[order])


def _codes(previous, n):
    if previous is None or previous.get("labels") is None:
        return np.full(n, -1, dtype=np.int64)
    return previous["labels"].numpy().astype(np.int64)


def replay_source(state, spec):
    """The stored rows that :meth:`partial_fit` replays from a saved ``state``: its
    reservoir, or for a state saved before runs kept one, its landmarks' rows (``None``
    when it has neither); checked."""
    reservoir = checked_reservoir(state.get("reservoir"), spec)
    if reservoir is not None:
        return reservoir["rows"]
    landmarks = checked_landmarks(state.get("landmarks"), spec)
    return None if landmarks is None else landmarks["rows"]


def reservoir_reference(spec, state, rows, device):
    """The reservoir's rows and their embedding by the last weights, for placement."""
    return _reference(spec, state, lambda chosen: rows[chosen].to(device), len(rows), device)


def keeps_reference(plan, source):
    """Whether a fit keeps its training rows (of ``source``) to place unseen rows
    (``placement``): ``"auto"`` keeps rows held in memory, not rows streamed from files,
    and none with ``store_rows=False``."""
    if plan.placement == "auto":
        return plan.neighbor_weight > 0 and source.in_memory and plan.store_rows
    return plan.placement == "neighbors"


def training_reference(spec, state, data, device):
    """The training rows (with the held-out validation rows of ``X``) and their embedding
    by the best weights, for :meth:`cvae.neighbors.placement.NeighborReference.place`."""
    source = data.train.source
    indices = data.train.indices if data.held_out is None else np.union1d(data.train.indices, data.valid.indices)

    def read(chosen):
        return torch.from_numpy(take_rows(source, indices[chosen])).to(device)

    return _reference(spec, state, read, len(indices), device)


def _reference(spec, state, read, n_rows, device):
    """:meth:`NeighborReference.build` of ``n_rows`` rows read by ``read`` with the best weights."""
    model = build_module(spec, state["best_model"]).to(device).eval()
    return NeighborReference.build(read, n_rows, spec.n_features, model, _random.rng("projection", spec.seed))
