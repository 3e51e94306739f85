"""Training loop, its callbacks, and log-directory persistence (no scikit-learn estimator code here)."""

from .callbacks import Callback
from .._atomic import atomic_write
from .io import load_checkpoint, save_checkpoint
from .logdir import LogDir, LogDirLocked
from .trainer import Trainer, TrainerConfig

__all__ = ["Callback", "LogDir", "LogDirLocked", "Trainer", "TrainerConfig", "atomic_write", "load_checkpoint",
           "save_checkpoint"]
