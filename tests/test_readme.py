"""Every Python block of README.md runs as written in an empty folder, and so does its command
line block; fits are shortened (the estimator's default ``max_steps`` is lowered for the test)."""

import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


@pytest.fixture
def short_fits(monkeypatch, tmp_path):
    """An empty working folder, and fits of 60 steps unless a block asks for a budget."""
    from cvae import CompressionVAE

    defaults = dict(CompressionVAE.__init__.__kwdefaults__, max_steps=60)
    monkeypatch.setattr(CompressionVAE.__init__, "__kwdefaults__", defaults)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("number", range(len(blocks("python"))))
def test_each_python_block_runs_as_written(number, short_fits):
    if "anndata" in blocks("python")[number]:
        pytest.importorskip("anndata")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(blocks("python")[number], f"README.md python block {number}", "exec"), {})


def test_the_command_line_block_runs_as_written(short_fits):
    from cvae.cli import main

    (block,) = [b for b in blocks("bash") if "cvae fit" in b]
    lines = block.replace("\\\n", " ").strip().split("\n")
    # the first command, a Python one-liner over two lines, makes the block's files
    script = block[block.index('python -c "') + len('python -c "') : block.index('"\ncvae')]
    subprocess.run([sys.executable, "-c", script], check=True, cwd=short_fits)
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("cvae ")]
    # --resume finishes a run stopped by Ctrl-C (tested in test_cli.py); the export of the
    # placement takes about 20 s (tested in test_export.py)
    run = [c for c in commands if "--resume" not in c and not c.startswith("cvae export")]
    assert len(run) == len(commands) - 2 >= 6
    for command in run:
        assert main(shlex.split(command)[1:]) == 0, command
    for name in ("embedding.npy", "reconstruction.npy", "generated.npy", "embedding.png"):
        assert (short_fits / name).stat().st_size > 0
