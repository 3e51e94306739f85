"""TensorBoard event files in the log directory (needs the ``tensorboard`` extra)."""


__all__ = ["TensorBoardLog", "write_figures"]


# History column -> TensorBoard tag. Tags sharing a prefix are drawn in one section.
SCALAR_TAGS = {
    "train_loss": "loss/train",
    "validation_loss": "loss/validation",
    "validation_log_likelihood": "validation/reconstruction_log_likelihood",
    "validation_kl": "validation/kl",
    "validation_elbo": "validation/elbo",
    "learning_rate": "learning_rate",
}


class TensorBoardLog:
    """Scalars after each validation and figures at the end of a fit.

    Parameters
    ----------
    path : str or path-like
        Directory for the event files (the run's log directory).
    """

    def __init__(self, path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ImportError(
                "tensorboard=True needs the tensorboard package: pip install tensorboard (in a clone: "
                "pip install -e '.[tensorboard]')."
            ) from exc
        self.writer = SummaryWriter(str(path))

    def write_scalars(self, row):
        """Write one history row (a dict with ``step``) as scalars."""
        for key, tag in SCALAR_TAGS.items():
            if key in row:
                self.writer.add_scalar(tag, row[key], row["step"])
        self.writer.flush()

    def write_figure(self, tag, figure, step):
        """Write a matplotlib figure as an image."""
        self.writer.add_figure(tag, figure, step, close=False)
        self.writer.flush()

    def close(self):
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def write_figures(path, figures, step):
    """Write ``figures`` (tag -> matplotlib figure) to the event files under ``path`` at ``step``."""
    with TensorBoardLog(path) as log:
        for tag, figure in figures.items():
            log.write_figure(tag, figure, step)
