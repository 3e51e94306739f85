"""Training under ``torchrun``: two CPU processes with the gloo backend."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch.distributed

from cvae import CompressionVAE
from cvae.data.batches import shard_permutation
from cvae.training.distributed import Distributed

_TRAIN = """
import os, sys
import numpy as np
import cvae.data.graph
import cvae.training.run
from cvae import CompressionVAE
data, logdir, out = sys.argv[1:4]
rank = os.environ["RANK"]
searched, batches = [], []
search, make_batches = cvae.data.graph.neighbor_graph, cvae.training.run.training_batches
cvae.data.graph.neighbor_graph = lambda X, k, **kw: searched.append(k) or search(X, k, **kw)
cvae.training.run.training_batches = lambda *a, **kw: batches.append(make_batches(*a, **kw)) or batches[-1]
params = dict(hidden_layer_sizes=(32, 16), batch_size=64, max_steps=200, validation_interval=25,
              learning_rate="constant", random_state=0, logdir=logdir)
vae = CompressionVAE(**params).fit(data)
np.save(os.path.join(out, f"Z{rank}.npy"), vae.transform(data))
np.save(os.path.join(out, f"graph{rank}.npy"), batches[0].neighbors)
np.save(os.path.join(out, f"seed{rank}.npy"), batches[0].seed)
np.save(os.path.join(out, f"searched{rank}.npy"), np.array(searched))
"""

PARAMS = dict(hidden_layer_sizes=(32, 16), batch_size=64, max_steps=200, validation_interval=25,
              learning_rate="constant", random_state=0)


def test_process_layout_defaults_to_one_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    layout = Distributed.from_environment()
    assert (layout.rank, layout.world_size, layout.enabled, layout.is_main) == (0, 1, False, True)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    layout = Distributed.from_environment()
    assert (layout.rank, layout.world_size, layout.is_main) == (3, 4, False)
    import torch

    assert layout.device(torch.device("cuda")) == torch.device("cuda", 1)
    assert layout.device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this PyTorch build has no torch.distributed")
def test_torchrun_two_processes_train_one_model(digits, tmp_path):
    X = digits[0][:800]
    np.save(tmp_path / "X.npy", X)
    script = tmp_path / "train.py"
    script.write_text(_TRAIN)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
               str(tmp_path / "X.npy"), str(tmp_path / "run"), str(tmp_path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr.replace("OMP_NUM_THREADS", ""), result.stderr[-3000:]  # none of torch's

    Z0, Z1 = np.load(tmp_path / "Z0.npy"), np.load(tmp_path / "Z1.npy")
    np.testing.assert_array_equal(Z0, Z1)  # the same fitted estimator in every process
    # One neighbour graph over all training rows (k=15), and one over the validation rows
    # (k=1), each searched by rank 0 alone and sent to rank 1.
    graph = np.load(tmp_path / "graph0.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "graph1.npy"), graph)
    assert list(np.load(tmp_path / "searched0.npy")) == [15, 1] and len(np.load(tmp_path / "searched1.npy")) == 0
    # the first epoch's shards: a row's neighbours are rows of either process
    seed = int(np.load(tmp_path / "seed0.npy"))
    shards = [shard_permutation(len(graph), seed, 0, rank, 2).numpy() for rank in (0, 1)]
    owner = np.empty(len(graph), int)
    owner[shards[1]] = 1
    across = (owner[graph[shards[0]]] == 1).mean()
    assert 0.3 < across < 0.7, across
    saved = CompressionVAE.load(tmp_path / "run")  # written once, by rank 0, and loadable
    np.testing.assert_array_equal(saved.transform(X), Z0)
    history = saved.history_
    assert saved.n_steps_ == 200 and len(history) == 8
    assert history[-1]["validation_loss"] < 0.97 * history[0]["validation_loss"]  # it learned

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single = CompressionVAE(**PARAMS).fit(X)
    # Same global batch and steps, same validation rows, the neighbour term's negatives drawn
    # from the whole batch: the same loss up to training noise (6% apart with each
    # process's own rows as negatives).
    print("best validation loss: 2 processes", saved.best_validation_loss_, "1 process", single.best_validation_loss_)
    assert saved.best_validation_loss_ == pytest.approx(single.best_validation_loss_, rel=0.01)
