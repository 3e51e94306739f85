"""A saved trainer state checked whole (cvae.training.state): each damaged part is named
with the file it came from, whether read from a log directory or unpickled."""

import copy
import pickle

import pytest
import torch

from cvae import CompressionVAE
from cvae.training.state import checked_state


@pytest.fixture(scope="module")
def fitted(digits):
    X, y = digits
    y = y.copy()
    y[::2] = -1  # half the rows unlabelled
    return CompressionVAE(hidden_layer_sizes=(16,), max_steps=30, random_state=0).fit(X[:300], y[:300])


def _damage_rows(part):
    part["rows"][0, 0] = float("nan")


DAMAGES = {
    "no trainer state": lambda state: state.pop("history"),
    "non-finite or missing weights": lambda state: state["best_model"].__setitem__(
        next(iter(state["best_model"])), torch.tensor(float("inf"))),
    "landmarks": lambda state: _damage_rows(state["landmarks"]),
    "reservoir": lambda state: _damage_rows(state["reservoir"]),
    "labelled rows": lambda state: state["labelled"]["labels"].__setitem__(0, -5),
    "classes are damaged": lambda state: state.__setitem__("classes", [3, 1]),
    "neighbour reference": lambda state: state["reference"]["embedding"].__setitem__((0, 0), float("nan")),
}


def test_a_fitted_state_reads_back_as_it_was(fitted):
    state = checked_state(fitted._checkpoint, fitted.spec_, "here")
    for key in ("landmarks", "reservoir", "labelled"):
        for name, tensor in fitted._checkpoint[key].items():
            assert torch.equal(state[key][name], tensor)
    assert state["classes"] == fitted._checkpoint["classes"]


@pytest.mark.parametrize("part", DAMAGES)
def test_each_damaged_part_is_named_with_its_file(fitted, part):
    state = copy.deepcopy(fitted._checkpoint)
    DAMAGES[part](state)
    with pytest.raises(ValueError, match="^Cannot read ") as error:
        checked_state(state, fitted.spec_, "checkpoint run/checkpoint.pt")
    assert "checkpoint run/checkpoint.pt" in str(error.value) and part in str(error.value)


def test_an_unpickled_estimator_with_a_damaged_part_is_refused(fitted):
    damaged = copy.deepcopy(fitted)
    damaged._checkpoint["reservoir"]["rows"][0, 0] = float("inf")
    data = pickle.dumps(damaged)
    with pytest.raises(ValueError, match="Cannot read the pickled estimator's checkpoint: the checkpoint's reservoir"):
        pickle.loads(data)
    assert pickle.loads(pickle.dumps(fitted)).classes_.tolist() == fitted.classes_.tolist()


def test_a_damaged_state_is_refused_before_a_warm_start_trains(fitted, digits):
    damaged = copy.deepcopy(fitted)
    damaged._checkpoint["landmarks"]["embedding"][0, 0] = float("nan")
    damaged.set_params(warm_start=True, max_steps=40)
    with pytest.raises(ValueError, match="Cannot read the fitted estimator's checkpoint: the checkpoint's landmarks"):
        damaged.fit(digits[0][:300], digits[1][:300])
    assert damaged.n_steps_ == fitted.n_steps_
