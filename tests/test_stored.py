"""What a run stores beside its weights (cvae.training.stored), and store_rows=False, which stores none of it."""

import pickle

import numpy as np
import pytest
import torch

from cvae import CompressionVAE
from cvae.training import LogDir

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ROW_PARTS = ("reservoir", "landmarks", "reference")


def test_store_rows_false_keeps_no_training_data_anywhere(X, fast, tmp_path):
    kept = CompressionVAE(**fast).fit(X)
    bare = CompressionVAE(store_rows=False, logdir=tmp_path / "run", **fast).fit(X)
    assert all(kept._checkpoint.get(part) is not None for part in ROW_PARTS)
    assert all(bare._checkpoint.get(part) is None for part in ROW_PARTS)
    on_disk = torch.load(LogDir(tmp_path / "run").file(LogDir.CHECKPOINT), weights_only=True)
    assert all(on_disk.get(part) is None for part in ROW_PARTS)
    # the same model (same seed), without the rows: the pickle shrinks by them
    np.testing.assert_array_equal(bare.set_params(placement="encoder").transform(X),
                                  kept.set_params(placement="encoder").transform(X))
    assert len(pickle.dumps(bare)) < len(pickle.dumps(kept)) - X[:len(X) * 9 // 10].nbytes
    # placement "auto" is the encoder's map without stored rows
    bare.set_params(placement="auto")
    assert not hasattr(bare, "embedding_") and bare._reference is None
    np.testing.assert_array_equal(bare.transform(X[:20]), bare.set_params(placement="encoder").transform(X[:20]))


def test_store_rows_false_updates_learn_new_rows_alone(X, fast):
    vae = CompressionVAE(store_rows=False, **dict(fast, batch_size=100)).fit(X[:200])
    steps = vae.n_steps_
    vae.partial_fit(X[200:])  # no replay: one pass over the 200 new rows
    assert vae.n_steps_ == steps + 2
    assert all(vae._checkpoint.get(part) is None for part in ROW_PARTS)
    # a model that kept rows drops them once an update is told not to keep any
    kept = CompressionVAE(**fast).fit(X[:200])
    kept.set_params(store_rows=False).partial_fit(X[200:])
    assert all(kept._checkpoint.get(part) is None for part in ROW_PARTS)


def test_the_neighbour_placement_without_stored_rows_is_refused(X, fast):
    with pytest.raises(ValueError, match="placement='neighbors' places rows by the training rows .* store_rows=False"):
        CompressionVAE(placement="neighbors", store_rows=False, **fast).fit(X)


def test_the_sample_of_rows_keeps_each_rows_label_and_a_labelled_copy_labels_it():
    from cvae.data.sources import ArraySource
    from cvae.training.stored import sampled_rows

    rows = np.arange(20, dtype=np.float32).reshape(10, 2)
    source = ArraySource(rows)
    codes = np.array([0, 1, -1, 2, -1, 0, 1, -1, 2, 0])
    first = sampled_rows(None, source, np.arange(10), 0, 4, codes)
    kept = {tuple(r): int(c) for r, c in zip(first["rows"].numpy(), first["labels"].numpy())}
    assert kept == {tuple(r): int(c) for r, c in zip(rows, codes)}
    # the rows again, the unlabelled ones now labelled 1: labels are kept, and gained, never lost
    again = sampled_rows(first, source, np.arange(10), 0, 4, np.where(codes == -1, 1, -1))
    assert len(again["rows"]) == 10
    assert {tuple(r): int(c) for r, c in zip(again["rows"].numpy(), again["labels"].numpy())} == {
        tuple(r): int(c if c >= 0 else 1) for r, c in zip(rows, codes)}
    assert "labels" not in sampled_rows(None, source, np.arange(10), 0, 4)  # without labels, as before
