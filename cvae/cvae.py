"""The original CompressionVAE interface, as a thin layer on :class:`cvae.CompressionVAE`.

Code written for the TensorFlow CompressionVAE runs unchanged::

    from cvae import cvae
    embedder = cvae.CompressionVAE(X)
    embedder.train()
    z = embedder.embed(X)
    embedder.visualize(z, labels=y)
    embedder.visualize_latent_grid(shape=(28, 28))

Each argument keeps its original meaning and default (see docs/migration.md for
the estimator parameter it sets); the model and checkpoints are the PyTorch estimator's,
so TensorFlow checkpoints cannot be restored. Fixed rather than copied from the original:
``visualize`` without labels works and orders string labels, ``~`` in ``logdir`` is
expanded, ``X=None`` restores a saved model for embedding and decoding, a ``'temp'``
directory only loses the files of the previous run, and losses never become NaN.
"""

from pathlib import Path

import numpy as np

from .estimator import CompressionVAE as _Estimator
from .files import read_array
from .data.inputs import is_streamed
from .training import LogDir

__all__ = ["CompressionVAE"]

TEMP_LOGDIR = "temp"


class CompressionVAE:
    """Variational autoencoder for embedding, with the original CompressionVAE's interface.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features) or str, default=None
        Training data, or the path to a directory tree of ``.npy`` files (one vector, or a
        block of rows, per file; read into memory). May be None when ``logdir`` holds a
        trained model, to embed and decode with it.
    X_valid : ndarray of shape (n_valid_samples, n_features), default=None
        Validation data; if None, ``X`` is split randomly by ``train_valid_split``.
    train_valid_split : float, default=0.9
        Fraction of ``X`` used for training.
    dim_latent : int, default=2
        Dimension of the embedding (``n_components``).
    iaf_flow_length : int, default=5
        Inverse autoregressive flow steps on the posterior.
    cells_encoder : list of int, default=None
        Encoder layer widths (the decoder mirrors them); None chooses them from the data.
    initializer : {"orthogonal", "truncated_normal", "lecun_normal"}, default="orthogonal"
    batch_size : int, default=64
        Training batch size.
    batch_size_test : int, default=64
        Batch size for validation.
    logdir : str, default="temp"
        Where the model is saved. ``"temp"`` starts afresh every time; any other directory
        that already holds a model restores it, and the model arguments above are ignored.
    feature_normalization : bool, default=True
        Standardize each feature with training statistics stored with the model.
    tb_logging : bool, default=False
        Write TensorBoard event files into ``logdir``.

    Attributes
    ----------
    estimator : cvae.CompressionVAE
        The scikit-learn estimator doing the work; use it directly for everything newer
        than the original interface (``score``, ``sample``, pipelines...).
    logdir : str
        Absolute path of the model directory.
    is_trained : bool
        Whether the model has been trained or restored.
    """

    def __init__(self, X=None, X_valid=None, train_valid_split=0.9, dim_latent=2, iaf_flow_length=5,
                 cells_encoder=None, initializer="orthogonal", batch_size=64, batch_size_test=64, logdir=TEMP_LOGDIR,
                 feature_normalization=True, tb_logging=False):
        self.logdir = str(Path(logdir).expanduser().resolve())
        run = LogDir(self.logdir)
        if logdir == TEMP_LOGDIR:
            run.clear()
        elif not run.has_run():
            _refuse_foreign_model(run)
        self.X = _read_if_path(X)
        self.X_valid = _read_if_path(X_valid)
        if run.has_run():
            self.estimator = _Estimator.load(self.logdir)
            self.is_trained = True
            print(f"Restored the model in {self.logdir} (trained for {self.estimator.n_steps_} steps); "
                  "its saved architecture is used.")
        else:
            if self.X is None:
                raise ValueError(f"No model to restore in {self.logdir}: pass the training data X.")
            self.estimator = _Estimator(
                n_components=dim_latent,
                hidden_layer_sizes=None if cells_encoder is None else tuple(cells_encoder),
                iaf_flow_length=iaf_flow_length,
                likelihood="gaussian",
                neighbor_weight=0.0,  # the original's plain VAE
                precision="float32",
                initializer=initializer,
                normalize="feature" if feature_normalization else "none",
                batch_size=batch_size,
                eval_batch_size=batch_size_test,
                validation_fraction=1.0 - train_valid_split,
                logdir=self.logdir,
                tensorboard=tb_logging,
            )
            self.is_trained = False

    def train(self, learning_rate=1e-3, num_steps=int(5e4), dropout_keep_prob=0.75, overwrite=False, test_every=50,
              lr_scheduling=True, lr_scheduling_steps=5, lr_scheduling_factor=5, lr_scheduling_min=1e-5,
              checkpoint_every=2000):
        """Train the model; Ctrl-C stops it and keeps the best model so far.

        Parameters
        ----------
        learning_rate : float, default=1e-3
            Initial Adam learning rate.
        num_steps : int, default=50000
            Total step budget, counting steps of earlier runs of this model.
        dropout_keep_prob : float, default=0.75
            Keep probability of dropout in the hidden layers (fixed when the model is
            created; ignored when continuing).
        overwrite : bool, default=False
            A trained or restored model is only trained further when this is True.
        test_every : int, default=50
            Steps between validations on the whole validation set.
        lr_scheduling : bool, default=True
            Divide the learning rate by ``lr_scheduling_factor`` after
            ``lr_scheduling_steps`` validations without improvement, and stop once it
            falls below ``lr_scheduling_min``. With ``test_every=50`` this stops early
            (about 3,000 steps on MNIST); ``test_every=500`` gives better embeddings.
        lr_scheduling_steps : int, default=5
        lr_scheduling_factor : float, default=5
        lr_scheduling_min : float, default=1e-5
        checkpoint_every : int, default=2000
            Steps between checkpoints in ``logdir``.

        Returns
        -------
        self
        """
        if self.is_trained and not overwrite:
            print(f"The model in {self.logdir} is already trained. To continue training it, pass overwrite=True; "
                  f"to train a new model, choose another logdir or the default {TEMP_LOGDIR!r}.")
            return self
        if self.X is None:
            raise ValueError("This model has no training data: create it again with X to train it.")
        if not self.is_trained:  # the architecture, dropout included, is fixed once trained
            self.estimator.set_params(dropout=1.0 - dropout_keep_prob)
        self.estimator.set_params(
            learning_rate="adaptive" if lr_scheduling else "constant",
            learning_rate_init=learning_rate,
            max_steps=int(num_steps),
            validation_interval=test_every,
            patience=lr_scheduling_steps,
            learning_rate_factor=lr_scheduling_factor,
            learning_rate_min=lr_scheduling_min,
            checkpoint_interval=checkpoint_every,
            warm_start=self.is_trained,
            verbose=True,
        )
        self.estimator.fit(self.X, X_valid=self.X_valid)
        self.is_trained = True
        return self

    def embed(self, X, batch_size=64):
        """Embed data (new or seen) into the latent space: the posterior mean.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features) or str
            Data, or a path that :func:`cvae.files.read_array` reads.
        batch_size : int, default=64
            Accepted for compatibility; rows are embedded in large batches.

        Returns
        -------
        z : ndarray of shape (n_samples, dim_latent)
        """
        return self.estimator.transform(_read_if_path(X))

    def decode(self, z):
        """Decode latent vectors to data space (the decoder mean, in the data's scale).

        Parameters
        ----------
        z : ndarray of shape (n_samples, dim_latent) or (dim_latent,)

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        return self.estimator.inverse_transform(np.atleast_2d(z))

    def visualize(self, z, labels=None, categories=None, filename=None):
        """Scatter a 2-D embedding, coloured by ``labels``; save to ``filename`` or show it.

        Returns
        -------
        fig : matplotlib.figure.Figure
        """
        from .plotting import plot_embedding

        return self._draw(plot_embedding, (12, 10), filename, np.asarray(z), labels=labels, categories=categories)

    def visualize_latent_grid(self, xy_range=(-4.0, 4.0), grid_size=10, shape=(28, 28), clip=(0, 255),
                              figsize=(12, 12), filename=None):
        """Decode a grid over the 2-D latent plane and show the images side by side.

        Returns
        -------
        fig : matplotlib.figure.Figure
        """
        from .plotting import plot_latent_grid

        return self._draw(plot_latent_grid, figsize, filename, self.estimator, shape, xy_range, grid_size, clip=clip)

    @staticmethod
    def _draw(plot, figsize, filename, *args, **kwargs):
        if filename is not None:
            return plot(*args, filename=filename, figsize=figsize, **kwargs)
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize, layout="constrained")
        fig = plot(*args, ax=ax, **kwargs)
        plt.show()
        return fig


def _read_if_path(X):
    """The original accepted a directory path wherever it took data.

    A path the estimator streams (:func:`cvae.data.inputs.is_streamed`: a directory, a .npy or
    .h5ad file) stays a path; other files (.npz, .csv) are read into memory.
    """
    if not isinstance(X, (str, Path)):
        return X
    return str(Path(X).expanduser()) if is_streamed(X) else read_array(X)[0]


def _refuse_foreign_model(run):
    """Never write over a model saved by the TensorFlow CompressionVAE."""
    params = run.path / LogDir.PARAMS
    if (run.path / "checkpoint").exists() or (params.exists() and "dim_feature" in params.read_text()):
        raise ValueError(
            f"{str(run.path)!r} holds a TensorFlow CompressionVAE model, which this version cannot restore. "
            "Choose another logdir; nothing there was changed."
        )
