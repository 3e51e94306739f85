"""Training loop and log-directory persistence (no scikit-learn estimator code here)."""

from .io import LogDir, atomic_write, load_checkpoint, save_checkpoint
from .trainer import Trainer, TrainerConfig

__all__ = ["LogDir", "Trainer", "TrainerConfig", "atomic_write", "load_checkpoint", "save_checkpoint"]
