"""A run widened for new categories of its covariates, so that ``partial_fit`` can add a batch.

The weights that read the encoded covariates (the encoder's first layer, the decoder's
first layer) gain a column per new category, started at the mean of the columns of its
covariate's known categories: a new batch starts as the average batch, and the update
trains it from there, the landmarks holding the reference embedding in place. The
optimizer's moments gain zero columns, and the rows the run stored (landmarks, reservoir)
a zero column, since none of them is of a new category.
"""

from dataclasses import replace

import torch

from ..spec import build_module

__all__ = ["widened"]


def widened(spec, state, table):
    """``(spec, state, new)`` of the run with the categories of ``table`` (a covariate table)
    it lacks, and ``new``: for each weight that reads the covariates, its columns of the new
    categories (for :class:`cvae.training.callbacks.TrainOnly`). ``spec``, ``state`` and
    ``None`` when it has them all."""
    covariates, inserted = spec.covariates.extended(table)
    if not inserted:
        return spec, state, None
    new_spec = replace(spec, covariates=covariates, model=replace(spec.model, n_covariates=covariates.width))
    offsets = {"encoder": spec.n_features, "posterior": spec.n_features, "decoder": spec.model.n_latent}
    old_width = spec.model.n_covariates
    shapes = {name: p.shape for name, p in build_module(new_spec).named_parameters()}
    index = {name: i for i, name in enumerate(shapes)}
    state = dict(state)
    widen = {}  # parameter name -> its column offset, for each weight that reads the covariates
    for name, shape in shapes.items():
        old = state["best_model"][name]
        if old.shape != shape:
            widen[name] = offsets[name.split(".")[0]]
    for key in ("model", "best_model"):
        state[key] = {name: _widened(value, widen[name], old_width, inserted, True) if name in widen else value
                      for name, value in state[key].items()}
    optimizer = dict(state["optimizer"])
    optimizer["state"] = {i: dict(moments) for i, moments in optimizer["state"].items()}
    for name, offset in widen.items():
        moments = optimizer["state"].get(index[name], {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in moments:
                moments[key] = _widened(moments[key], offset, old_width, inserted, False)
    state["optimizer"] = optimizer
    n = spec.n_features
    for key in ("landmarks", "reservoir", "labelled"):
        if state.get(key) is not None:
            state[key] = dict(state[key], rows=_widened(state[key]["rows"], n, old_width, inserted, False))
    columns = _new_columns(spec.covariates, covariates)
    return new_spec, state, {name: [offset + c for c in columns] for name, offset in widen.items()}


def _new_columns(old, new):
    """The encoded columns of ``new``'s categories that ``old`` lacks."""
    columns, start = [], 0
    for before, after in zip(old.columns, new.columns):
        columns += list(range(start + before.width, start + after.width))
        start += after.width
    return columns


def _widened(tensor, offset, old_width, inserted, mean):
    """``tensor`` with a column inserted for each ``(start, stop)`` of ``inserted`` (covariate
    columns counted from ``offset``): the mean of its covariate's columns ``start:stop``
    when ``mean``, else zeros."""
    parts, previous = [], 0
    for start, stop in sorted(inserted, key=lambda bounds: bounds[1]):
        parts.append(tensor[:, offset + previous : offset + stop])
        block = tensor[:, offset + start : offset + stop]
        parts.append(block.mean(dim=1, keepdim=True) if mean else torch.zeros_like(block[:, :1]))
        previous = stop
    return torch.cat([tensor[:, :offset], *parts, tensor[:, offset + previous : offset + old_width],
                      tensor[:, offset + old_width :]], dim=1)
