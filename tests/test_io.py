"""Checkpoint files (cvae.training.io): read without running code, damage named."""

import os
import pickle

import pytest
import torch

from cvae import CompressionVAE
from cvae.training import load_checkpoint


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": _RunsCode()}, path)
    with pytest.raises(ValueError, match="Refusing to load .*checkpoint.pt.*could execute code"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


# torch warns that the pickle protocol is not its own before its safe unpickler refuses the file
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_plain_pickle_checkpoint_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps({"model": _RunsCode()}))
    with pytest.raises(ValueError, match="checkpoint.pt"):
        load_checkpoint(path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="params.json"):
        CompressionVAE.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        load_checkpoint(tmp_path / "checkpoint.pt")
