"""A saved trainer state checked whole: the one reader of every part a checkpoint or a
pickle holds (the trainer's weights and counters, landmarks, sample of rows, labelled rows,
classes, the placement's reference), each checked before any of it is used."""

import torch

from ..data.labels import check_saved_classes
from ..neighbors.placement import NeighborReference

__all__ = ["check_trainer_state", "checked_landmarks", "checked_reservoir", "checked_state"]

_TRAINER_KEYS = ("model", "best_model", "step", "history")
_LABELLED = "labelled rows (what predict votes with)"


def checked_state(state, spec, where):
    """``state`` with every part checked against the model ``spec`` describes, its stored
    rows as float32 tensors; ``where`` names the file in errors ("checkpoint PATH").

    Raises
    ------
    ValueError
        Naming ``where`` and the part: no trainer state, best weights missing or not
        finite, damaged landmarks, sample of rows, labelled rows, classes or reference.
    """
    check_trainer_state(state, where)
    for name, tensor in state["best_model"].items():
        if not isinstance(tensor, torch.Tensor) or (tensor.is_floating_point() and not tensor.isfinite().all()):
            raise ValueError(f"Cannot read {where}: it holds non-finite or missing weights ({name}).")
    checked = dict(state)
    parts = (("landmarks", checked_landmarks), ("reservoir", checked_reservoir),
             ("labelled", lambda part, spec: checked_reservoir(part, spec, _LABELLED)))
    for key, check in parts:
        try:
            part = check(state.get(key), spec)
        except ValueError as exc:
            raise ValueError(f"Cannot read {where}: {exc}") from None
        if part is not None:
            checked[key] = part
    if "classes" in state:
        check_saved_classes(state["classes"], where)
    if state.get("reference") is not None:
        NeighborReference.from_state(state["reference"], spec.model.n_latent, where)
    return checked


def check_trainer_state(state, where):
    """``ValueError`` naming ``where`` unless ``state`` is a dict with a trainer's parts
    (what a file must hold before it can be upgraded or its digest taken)."""
    if not isinstance(state, dict) or not set(_TRAINER_KEYS) <= state.keys():
        raise ValueError(f"Cannot read {where}: it holds no trainer state.")


def checked_landmarks(landmarks, spec):
    """The landmarks of a saved state (as float32 tensors), or ``None``; ``ValueError`` when
    they are damaged."""
    if landmarks is None:
        return None
    rows, embedding = (landmarks.get(k) if isinstance(landmarks, dict) else None for k in ("rows", "embedding"))
    valid = (isinstance(rows, torch.Tensor) and isinstance(embedding, torch.Tensor) and rows.ndim == 2
             and rows.shape[1] == spec.n_inputs and embedding.shape == (len(rows), spec.model.n_latent)
             and len(rows) > 0 and bool(torch.isfinite(rows).all()) and bool(torch.isfinite(embedding).all()))
    if not valid:
        raise ValueError("the checkpoint's landmarks (the stored rows partial_fit keeps in place) are damaged: "
                         f"expected finite arrays of shape (n, {spec.n_inputs}) and (n, {spec.model.n_latent}).")
    return {"rows": rows.float(), "embedding": embedding.float()}


def checked_reservoir(reservoir, spec, what="reservoir (the rows partial_fit replays and places unseen rows by)"):
    """The reservoir of a saved state (or its labelled rows: ``what`` names them), or
    ``None``; ``ValueError`` when it is damaged."""
    if reservoir is None:
        return None
    rows, keys = (reservoir.get(k) if isinstance(reservoir, dict) else None for k in ("rows", "keys"))
    labels = reservoir.get("labels") if isinstance(reservoir, dict) else None
    valid = (isinstance(rows, torch.Tensor) and isinstance(keys, torch.Tensor) and rows.ndim == 2
             and rows.shape[1] == spec.n_inputs and keys.shape == (len(rows),) and len(rows) > 0
             and bool(torch.isfinite(rows).all()))
    valid = valid and (labels is None or isinstance(labels, torch.Tensor) and labels.shape == (len(rows),)
                       and not labels.is_floating_point() and bool((labels >= -1).all()))
    if not valid:
        raise ValueError(f"the checkpoint's {what} is damaged: expected finite arrays of shape (n, {spec.n_inputs}) "
                         "and (n,), and class codes of shape (n,) from -1 where it has them.")
    checked = {"rows": rows.float(), "keys": keys.double()}
    if labels is not None:
        checked["labels"] = labels.long()
    return checked
