"""The scikit-learn estimator: parameters, fit, transform, inverse_transform, score, sample."""

import json
import logging
import warnings
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from . import __version__
from ._validation import (
    Interval,
    StrOptions,
    check_chunk,
    check_finite_float,
    check_latent,
    check_unit_interval,
    draw_seed,
    isolated_rng,
    resolve_device,
    validate_input,
)
from .data import (
    STREAM_BUFFER_BYTES,
    BatchIterator,
    SourceChunks,
    StreamingBatches,
    TensorChunks,
    fits_on_device,
    iterate_chunks,
    local_batch_size,
    neighbor_graph,
    take_rows,
    train_validation_split,
)
from .nn import VAE
from .nn.likelihoods import LIKELIHOODS
from .nn.mlp import ACTIVATIONS, INITIALIZERS
from .nn.neighbors import NEIGHBOR_OBJECTIVES
from .nn.vae import default_hidden_sizes
from .preprocessing import NORMALIZATIONS, summarize
from .sources import ArraySource, open_source
from .training import LogDir, Trainer, TrainerConfig
from .training.distributed import Distributed
from .training.tensorboard import TensorBoardLog
from .training.trainer import PRECISIONS, make_adam

__all__ = ["CompressionVAE"]

logger = logging.getLogger(__name__)

# score_samples averages this many posterior draws, from this seed, shared by all rows:
# repeatable, independent of the other rows, and a mean over rows that does not carry the
# noise of a single draw.
_SCORE_SEED = 0
_SCORE_DRAWS = 8


class CompressionVAE(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Dimensionality reduction with a variational autoencoder.

    Learns an encoder from data to a ``n_components``-dimensional latent space and a
    decoder back, by maximizing the evidence lower bound (ELBO). The embedding is a real
    function: it maps unseen data (:meth:`transform`), decodes latent points to data space
    (:meth:`inverse_transform`), scores data by its ELBO (:meth:`score_samples`) and
    generates new samples (:meth:`sample`). The posterior can be made more flexible with
    inverse autoregressive flow (IAF) layers.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the latent space (the embedding).
    hidden_layer_sizes : tuple of int, default=None
        Widths of the encoder's hidden layers; the decoder mirrors them. ``None`` chooses
        three halving layers from the data (see :func:`cvae.nn.vae.default_hidden_sizes`:
        ``(512, 256, 128)`` for 784 features); the choice is stored in
        ``hidden_layer_sizes_``.
    iaf_flow_length : int, default=0
        Number of inverse autoregressive flow steps on the approximate posterior. Off by
        default: on MNIST, 2 steps did not improve the embedding (10-NN 0.780 against
        0.784 at 10,000 steps), and in the benchmark at 10,000 steps they raised the test
        ELBO by about the seed-to-seed spread (2-D, mean of 4 seeds: -140.0 against
        -141.0 nats; 10-D, 2 seeds: -103.5 against -104.1) for 10-15% more fit time.
    likelihood : {"auto", "gaussian", "bernoulli"}, default="auto"
        Decoder distribution. ``"gaussian"`` decodes a mean and learns one variance per
        feature (bounded below, so constant features cannot drive the loss to minus
        infinity); ``"bernoulli"`` is for data in [0, 1] such as pixel intensities.
        ``"auto"`` picks ``"bernoulli"`` when every training and validation value lies in
        [0, 1], else ``"gaussian"`` (stored in ``likelihood_``): on MNIST scaled to [0, 1]
        the 2-D embedding reached a 10-NN accuracy of 0.809 and trustworthiness 0.907
        with Bernoulli against 0.785 and 0.885 with Gaussian, both at 30,000 steps (with
        ``[512, 256]`` layers).
    beta : float, default=1.0
        Weight of the KL term (beta-VAE). 1 gives the true ELBO.
    kl_warmup_steps : int, default=0
        Steps over which the KL weight ramps linearly from 0 to ``beta``.
    free_bits : float, default=0.0
        Nats of KL per latent dimension that training does not penalize (Kingma et al.,
        2016): the loss holds each dimension's batch-average KL at this value or more, so
        a dimension gains nothing by collapsing onto the prior and staying unused. With
        IAF the total KL is held at ``free_bits * n_components``. The reported losses and
        :meth:`score_samples` stay the true ELBO.
    neighbor_weight : float, default=0.0
        Weight of a neighbour-preserving term added to the loss (off by default): each
        training row's nearest neighbours in the normalized data space, found once with
        scikit-learn's ``NearestNeighbors``, are pulled close in the embedding and other
        rows of the batch pushed away, with UMAP's similarity and negative sampling (see
        :func:`cvae.nn.neighbors.neighbor_loss`; see ``neighbor_objective``). The term is multiplied by
        ``neighbor_weight * n_features_in_``: the ELBO's reconstruction term grows with the
        number of features, so one weight suits data of any width. The embedding keeps
        more of the data's local structure; the model still transforms unseen data,
        decodes and samples. Needs the training data in memory. Validation adds the term
        over each validation row and its nearest validation row, so that model selection
        and the learning-rate schedule follow the objective being trained. On MNIST (2-D,
        default budget, ``benchmarks/bench_neighbors.py``), 0.4 raised the test 10-NN
        accuracy from 0.832 to 0.954 (UMAP: 0.957) with trustworthiness 0.927 against
        0.928, the same reconstruction error and 1.5x the fit time; with one
        neighbour per row and step, other weights did no better
        (``benchmarks/sweep_neighbors.py``).
    n_neighbors : int, default=15
        Neighbours per row for ``neighbor_weight``.
    neighbor_samples : int, default=3
        Neighbours drawn for each row of a training batch, each pair weighted by
        ``neighbor_weight``. Every drawn neighbour is encoded once more, so each one adds
        about 0.4x the cost of a plain training step, and a layout improves with the number
        of pairs it is fitted with. On MNIST (2-D, 10,000 steps), 3 raised the test 10-NN
        accuracy from 0.881 (1) to 0.940 (``benchmarks/sweep_neighbors.py``).
    neighbor_objective : {"umap", "tsne"}, default="umap"
        The neighbour term of ``neighbor_weight``. ``"umap"``: UMAP's fuzzy cross-entropy
        with negative sampling (:func:`cvae.nn.neighbors.neighbor_loss`). ``"tsne"``:
        each row must pick its neighbour out of the batch under a Cauchy kernel (InfoNCE),
        which approximates t-SNE's normalized objective
        (:func:`cvae.nn.neighbors.contrastive_neighbor_loss`); it spreads the embedding
        further from the prior, so the ELBO is lower. On MNIST (2-D, weight 0.4, run to
        convergence side by side, ``benchmarks/sweep_neighbors.py``), ``"umap"`` reached
        test 10-NN 0.956, trustworthiness(10) 0.930, MSE 0.0335 and ELBO -155.5;
        ``"tsne"`` 0.957, 0.933, 0.0329 and -205.6.
    activation : {"relu", "elu", "gelu", "tanh"}, default="relu"
        Hidden-layer non-linearity.
    dropout : float, default=0.0
        Dropout probability in the hidden layers during training.
    initializer : {"orthogonal", "truncated_normal", "lecun_normal", "default"}, \
default="orthogonal"
        Weight initialization; ``"default"`` keeps PyTorch's.
    normalize : {"global", "feature", "none"}, default="global"
        How features are normalized before the network sees them, with statistics of
        the training data stored in the model (inputs and outputs stay in the original
        scale). ``"global"`` centers each feature and divides all by one common scale, so
        the model does not depend on the data's units and features keep their relative
        importance, as in PCA. ``"feature"`` standardizes each feature (the original
        CompressionVAE's ``feature_normalization=True``): right for features in unrelated
        units, but it inflates rare features such as MNIST's border pixels (10-NN
        accuracy 0.72 against 0.78 for "global" at 5000 steps). See
        :func:`cvae.preprocessing.normalization_statistics`.
    batch_size : int, default=128
        Training mini-batch size. On MNIST, 64 trains the CPU at half the samples/s and
        256 gave no better embedding per second of training.
        Under ``torchrun`` these rows are split across the processes, so a step sees the
        same number of rows on any number of processes.
    eval_batch_size : int, default=4096
        Rows per batch for validation, :meth:`transform`, :meth:`inverse_transform` and
        :meth:`score_samples`.
    learning_rate : {"adaptive", "constant"}, default="adaptive"
        ``"adaptive"`` divides the rate by ``learning_rate_factor`` after ``patience``
        validations without improvement and stops once it falls below
        ``learning_rate_min``; ``"constant"`` keeps ``learning_rate_init`` and trains for
        ``max_steps``.
    learning_rate_init : float, default=1e-3
        Initial Adam learning rate.
    max_steps : int, default=50000
        Budget of optimization steps (over all warm-started fits of one run). With the
        other defaults, a 2-D embedding of MNIST converges by the learning-rate rule at
        about 45,000 steps (about 100 epochs), in about 7 minutes on a 2-core CPU, and
        improves on the 30,000-step fit (10-NN accuracy 0.855 against 0.845).
    validation_fraction : float, default=0.1
        Fraction of ``X`` held out (seeded random split) when ``X_valid`` is not given.
    validation_interval : int, default=500
        Steps between validations. Each validation uses the whole validation set with
        the same posterior noise every time, so successive losses compare models rather
        than samples.
    patience : int, default=5
        Validations without a new best before the learning rate is divided by
        ``learning_rate_factor``. The original CompressionVAE validated one batch every
        50 steps with patience 5 and stopped MNIST after about 3,000 steps; 500-step
        intervals on the full validation set let the rate first drop between 25,000 and
        30,000 steps.
    learning_rate_factor : float, default=5.0
        Divisor of the learning rate on a plateau.
    learning_rate_min : float, default=1e-5
        Training has converged when the learning rate falls below this value.
    tol : float, default=0.0
        A validation loss counts as an improvement when it beats the best by more than
        ``tol`` nats.
    checkpoint_interval : int, default=2000
        Steps between checkpoints in ``logdir`` (one is also written at the end).
    logdir : str or path-like, default=None
        Directory for parameters, normalization statistics, history and checkpoints.
        ``None`` writes nothing.
    tensorboard : bool, default=False
        Write TensorBoard event files into ``logdir`` (needs the ``tensorboard`` extra):
        losses, reconstruction log-likelihood, KL and learning rate at each validation
        and, for 2-D embeddings, a figure of the validation embedding at the end of the
        fit, plus the decoded latent grid when the features form a square image (these
        figures need the ``plot`` extra).
    warm_start : bool, default=False
        Continue the previous run (the fitted model in memory, or else the checkpoint in
        ``logdir``) instead of starting afresh: step count, optimizer, scheduler and random
        state carry on.
    device : str or torch.device, default="auto"
        ``"auto"`` picks CUDA, then Apple MPS, then CPU.
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Arithmetic of the training steps. ``"bfloat16"`` and ``"float16"`` train in mixed
        precision: the network's matrix products run in 16 bits under
        ``torch.autocast``, while the weights, Adam's state, the loss terms, validation
        and every output of :meth:`transform` and the other methods stay float32.
        ``"float16"`` also scales the loss (``torch.amp.GradScaler``) so that small
        gradients do not vanish. It pays where the hardware multiplies 16-bit numbers
        faster: on the 2-core Xeon with AMX used for the benchmarks, ``"bfloat16"``
        trained the 784-512-256-2 model 1.4x faster at batch 256 and 1.6x at 1024, but
        0.85x at batch 64, where the casts cost more than they save
        (``benchmarks/bench_speed.py``); use it on CUDA GPUs from Ampere on, and
        ``"float16"`` on older ones.
    compile : bool, default=False
        Train through ``torch.compile`` (one compilation serves every batch size; the first
        step takes seconds to a minute longer). Validation and the other methods run
        eagerly. Compiled code draws the posterior noise from its own generator, so the
        fit differs from the eager one in its random draws, and is reproducible with the
        same ``random_state``. Needs a C++ compiler on the CPU. It pays where
        per-operation overhead dominates: on the benchmark's 2-core CPU it trained with 5
        IAF steps at batch 64 13-38% faster, and without flows no faster
        (``benchmarks/bench_speed.py``).
    random_state : int, RandomState instance or None, default=None
        Seeds the split, the initialization and every random draw of training. On the
        CPU, the same seed gives the same model bit for bit.
    verbose : bool, default=False
        In a terminal or a notebook, show a progress bar with step, losses, learning
        rate and time left; elsewhere (output to a file or a pipe), log one line per
        validation at level INFO through the ``cvae.training.trainer`` logger.

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen during fit, when ``X`` had string column names.
    hidden_layer_sizes_ : list of int
        Encoder widths used.
    likelihood_ : {"gaussian", "bernoulli"}
        Decoder likelihood used (``likelihood="auto"`` resolved).
    device_ : torch.device
        Device the model lives on.
    module_ : cvae.nn.VAE
        The fitted torch module, in evaluation mode, with the best validation weights.
    mean_, scale_ : ndarray of shape (n_features_in_,)
        Normalization statistics (0 and 1 when ``normalize="none"``).
    history_ : list of dict
        One row per validation: ``step``, ``train_loss``, ``validation_loss`` (the
        negative ELBO, plus the neighbour term when ``neighbor_weight > 0``),
        ``validation_log_likelihood``, ``validation_kl``, ``learning_rate``,
        ``elapsed_seconds``.
    n_steps_ : int
        Optimization steps taken so far.
    best_validation_loss_ : float
        Lowest validation loss (negative ELBO per sample, in nats).
    stop_reason_ : {"converged", "max_steps", "interrupted", "diverged"}
        Why the last fit ended.

    See Also
    --------
    sklearn.decomposition.PCA : Linear dimensionality reduction.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from cvae import CompressionVAE
    >>> X, _ = load_digits(return_X_y=True)
    >>> vae = CompressionVAE(n_components=2, max_steps=200, random_state=0)
    >>> Z = vae.fit_transform(X)
    >>> Z.shape
    (1797, 2)
    >>> vae.inverse_transform(Z[:3]).shape
    (3, 64)
    """

    _parameter_constraints = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", None],
        "iaf_flow_length": [Interval(Integral, 0, None, closed="left")],
        "likelihood": [StrOptions({"auto", *LIKELIHOODS})],
        "beta": [Interval(Real, 0, None, closed="left")],
        "kl_warmup_steps": [Interval(Integral, 0, None, closed="left")],
        "free_bits": [Interval(Real, 0, None, closed="left")],
        "neighbor_weight": [Interval(Real, 0, None, closed="left")],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "neighbor_samples": [Interval(Integral, 1, None, closed="left")],
        "neighbor_objective": [StrOptions(set(NEIGHBOR_OBJECTIVES))],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "initializer": [StrOptions(set(INITIALIZERS))],
        "normalize": [StrOptions(set(NORMALIZATIONS))],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "eval_batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"adaptive", "constant"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_steps": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "validation_interval": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 0, None, closed="left")],
        "learning_rate_factor": [Interval(Real, 1, None, closed="neither")],
        "learning_rate_min": [Interval(Real, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "checkpoint_interval": [Interval(Integral, 1, None, closed="left")],
        "logdir": [str, Path, None],
        "tensorboard": ["boolean"],
        "warm_start": ["boolean"],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS))],
        "compile": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components=2,
        *,
        hidden_layer_sizes=None,
        iaf_flow_length=0,
        likelihood="auto",
        beta=1.0,
        kl_warmup_steps=0,
        free_bits=0.0,
        neighbor_weight=0.0,
        n_neighbors=15,
        neighbor_samples=3,
        neighbor_objective="umap",
        activation="relu",
        dropout=0.0,
        initializer="orthogonal",
        normalize="global",
        batch_size=128,
        eval_batch_size=4096,
        learning_rate="adaptive",
        learning_rate_init=1e-3,
        max_steps=50000,
        validation_fraction=0.1,
        validation_interval=500,
        patience=5,
        learning_rate_factor=5.0,
        learning_rate_min=1e-5,
        tol=0.0,
        checkpoint_interval=2000,
        logdir=None,
        tensorboard=False,
        warm_start=False,
        device="auto",
        precision="float32",
        compile=False,
        random_state=None,
        verbose=False,
    ):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.iaf_flow_length = iaf_flow_length
        self.likelihood = likelihood
        self.beta = beta
        self.kl_warmup_steps = kl_warmup_steps
        self.free_bits = free_bits
        self.neighbor_weight = neighbor_weight
        self.n_neighbors = n_neighbors
        self.neighbor_samples = neighbor_samples
        self.neighbor_objective = neighbor_objective
        self.activation = activation
        self.dropout = dropout
        self.initializer = initializer
        self.normalize = normalize
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.max_steps = max_steps
        self.validation_fraction = validation_fraction
        self.validation_interval = validation_interval
        self.patience = patience
        self.learning_rate_factor = learning_rate_factor
        self.learning_rate_min = learning_rate_min
        self.tol = tol
        self.checkpoint_interval = checkpoint_interval
        self.logdir = logdir
        self.tensorboard = tensorboard
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.compile = compile
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y=None, *, X_valid=None):
        """Fit the VAE to ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), path or numpy.memmap
            Training data: in memory, or data larger than memory as a ``.npy`` file, a
            directory tree of ``.npy`` files (each a sample or a block of rows, read in
            sorted path order) or a ``numpy.memmap``. Files are streamed: one pass
            computes the normalization statistics, and training reads shuffled buffers of
            about 64 MB, so memory use does not grow with the data.
        y : None
            Ignored; present for API consistency.
        X_valid : array-like of shape (n_valid_samples, n_features), path or \
numpy.memmap, default=None
            Validation data for learning-rate scheduling and model selection. If None,
            ``validation_fraction`` of ``X``'s rows is held out, and the split is saved in
            ``logdir`` so that a continued run validates on the same rows.

        Returns
        -------
        self : CompressionVAE
            The fitted estimator. After a ``KeyboardInterrupt`` it holds the best model
            so far (and has saved a checkpoint when ``logdir`` is set).
        """
        self._validate_params()
        self._check_params()
        distributed = Distributed.from_environment()
        device = distributed.device(resolve_device(self.device))
        distributed.join(device)
        logdir = LogDir(self.logdir) if self.logdir is not None else None
        resume, meta = self._previous_run(logdir)
        source = self._training_source(X)
        if self.neighbor_weight > 0 and not source.in_memory:
            raise ValueError(
                f"neighbor_weight={self.neighbor_weight} needs the training data in memory to find each row's "
                f"neighbours, but X is read from {source.name}. Load it into an array, or set neighbor_weight=0."
            )
        if meta is not None:
            self._check_same_features(source.n_features, meta)
        seed = meta["seed"] if meta is not None else distributed.broadcast(draw_seed(self.random_state))
        (train, train_idx), (valid, valid_idx) = self._split(source, X_valid, seed, logdir)
        valid_name = "X" if X_valid is None else "X_valid"
        summary = summarize(_checked_chunks(train, train_idx, "X"))
        valid_summary = summarize(_checked_chunks(valid, valid_idx, valid_name))
        if meta is not None:
            likelihood = meta["model"]["likelihood"]
        else:
            likelihood = self._resolve_likelihood(summary, valid_summary)
        if likelihood == "bernoulli":
            check_unit_interval(summary.low, summary.high, "X")
            check_unit_interval(valid_summary.low, valid_summary.high, valid_name)

        if meta is None:
            loc, scale = summary.normalization(self.normalize)
            meta = self._run_metadata(source.n_features, seed, loc, scale, likelihood)
        writer = logdir if logdir is not None and distributed.is_main else None
        if writer is not None:
            writer.write_params({"params": self._json_params(), "meta": meta})
            writer.write_normalization(np.asarray(meta["loc"], np.float32), np.asarray(meta["scale"], np.float32))
            if X_valid is None:
                writer.write_split(valid_idx, source.n_samples)
        tensorboard = TensorBoardLog(writer.path) if self.tensorboard and writer is not None else None
        with isolated_rng(device):
            torch.manual_seed(seed)
            trainer = self._make_trainer(meta, (train, train_idx), (valid, valid_idx), device, writer, tensorboard,
                                         distributed)
            if resume is not None:
                trainer.load_state_dict(resume)
            if distributed.rank > 0:  # the same weights everywhere, but each process its own noise
                torch.manual_seed(seed + distributed.rank + trainer.step)
            stop_reason = trainer.run()
            state = trainer.state_dict()
        if writer is not None:
            writer.write_checkpoint(state)
            writer.write_history(state["history"])
        self._adopt_run(state, meta, device)
        if tensorboard is not None:
            self._write_tensorboard_figures(tensorboard, valid, valid_idx)
            tensorboard.close()
        if distributed.is_main:
            self._warn_on_stop(stop_reason)
        return self

    def _training_source(self, X):
        """A row source for ``X``: its file, or the validated array in memory."""
        source = open_source(X)
        if source is None:
            return ArraySource(validate_input(self, X, reset=True), checked=True)
        if source.n_samples == 0 or source.n_features == 0:
            raise ValueError(f"X ({source.name}) holds {source.n_samples} sample(s) of {source.n_features} feature(s).")
        self.n_features_in_ = source.n_features
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return source

    def _check_params(self):
        """Checks that ``_parameter_constraints`` cannot express."""
        sizes = self.hidden_layer_sizes
        if sizes is not None and (len(sizes) == 0 or any(int(s) != s or s < 1 for s in sizes)):
            raise ValueError(f"hidden_layer_sizes must be a non-empty sequence of positive integers, got {sizes!r}.")
        if self.tensorboard and self.logdir is None:
            raise ValueError("tensorboard=True writes event files into logdir; set logdir too.")

    def _previous_run(self, logdir):
        """The checkpoint and metadata to continue from, or ``(None, None)`` for a fresh run."""
        if self.warm_start and hasattr(self, "_checkpoint"):
            return self._checkpoint, self._meta
        if logdir is None or not logdir.has_run():
            return None, None
        if not self.warm_start:
            raise FileExistsError(
                f"Log directory {str(logdir.path)!r} already holds a training run. Pass warm_start=True to "
                "continue it, use CompressionVAE.load() to use it as is, or choose an empty logdir to "
                "start afresh."
            )
        return logdir.read_checkpoint(), logdir.read_params()["meta"]

    def _check_same_features(self, n_features, meta):
        if n_features != meta["n_features"]:
            source = "in memory" if self.logdir is None else f"in {str(self.logdir)!r}"
            raise ValueError(
                f"X has {n_features} features, but the run being continued ({source}) was trained on "
                f"{meta['n_features']} features."
            )

    def _split(self, source, X_valid, seed, logdir):
        """``(source, sorted row indices)`` for training and for validation.

        Without ``X_valid``, the seeded split of ``source``'s rows, or the split saved in
        ``logdir`` by the run being continued.
        """
        if X_valid is not None:
            valid = open_source(X_valid, "X_valid")
            if valid is None:
                valid = ArraySource(validate_input(self, X_valid, reset=False, name="X_valid"), name="X_valid",
                                    checked=True)
            elif valid.n_features != source.n_features:
                raise ValueError(f"X_valid has {valid.n_features} features, but X has {source.n_features} features.")
            return (source, np.arange(source.n_samples)), (valid, np.arange(valid.n_samples))
        saved = logdir.read_split() if logdir is not None and self.warm_start else None
        if saved is not None and saved[1] == source.n_samples:
            valid_idx = saved[0]
            train_idx = np.setdiff1d(np.arange(source.n_samples), valid_idx, assume_unique=True)
        else:
            if saved is not None:
                warnings.warn(
                    f"The run being continued split {saved[1]} samples into training and validation, but X has "
                    f"{source.n_samples}; drawing a new split.",
                    UserWarning,
                    stacklevel=3,
                )
            train_idx, valid_idx = train_validation_split(source.n_samples, self.validation_fraction, seed)
        return (source, np.sort(train_idx)), (source, np.sort(valid_idx))

    def _resolve_likelihood(self, summary, valid_summary):
        if self.likelihood != "auto":
            return self.likelihood
        in_unit_interval = all(s.low >= 0 and s.high <= 1 for s in (summary, valid_summary))
        return "bernoulli" if in_unit_interval else "gaussian"

    def _run_metadata(self, n_features, seed, loc, scale, likelihood):
        sizes = self.hidden_layer_sizes
        sizes = default_hidden_sizes(n_features, self.n_components) if sizes is None else [int(s) for s in sizes]
        model = dict(
            n_features=n_features,
            n_latent=self.n_components,
            hidden_sizes=sizes,
            likelihood=likelihood,
            n_flows=self.iaf_flow_length,
            dropout=float(self.dropout),
            activation=self.activation,
            initializer=self.initializer,
        )
        names = getattr(self, "feature_names_in_", None)
        return {
            "version": __version__,
            "n_features": n_features,
            "feature_names": None if names is None else [str(n) for n in names],
            "seed": seed,
            "model": model,
            "loc": loc.tolist(),
            "scale": scale.tolist(),
        }

    def _make_trainer(self, meta, train, valid, device, logdir, tensorboard, distributed):
        model = _build_module(meta).to(device)
        optimizer = make_adam(model.parameters(), self.learning_rate_init)
        scheduler = None
        if self.learning_rate == "adaptive":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer,
                factor=1.0 / self.learning_rate_factor,
                patience=self.patience,
                threshold=self.tol,
                threshold_mode="abs",
            )
        config = TrainerConfig(
            max_steps=self.max_steps,
            validation_interval=self.validation_interval,
            eval_batch_size=self.eval_batch_size,
            beta=self.beta,
            kl_warmup_steps=self.kl_warmup_steps,
            free_bits=float(self.free_bits),
            neighbor_weight=float(self.neighbor_weight) * meta["n_features"],
            neighbor_objective=self.neighbor_objective,
            learning_rate_min=self.learning_rate_min,
            checkpoint_interval=self.checkpoint_interval,
            precision=self.precision,
            compile=self.compile,
            verbose=bool(self.verbose) and distributed.is_main,
        )
        rank, world_size = distributed.rank, distributed.world_size
        batch_size = local_batch_size(self.batch_size, rank, world_size)
        return Trainer(
            model,
            optimizer,
            scheduler,
            self._training_batches(*train, batch_size, meta, device, distributed),
            self._validation_chunks(valid[0], valid[1][rank::world_size], meta, device),
            config,
            on_checkpoint=logdir.write_checkpoint if logdir is not None else None,
            on_validation=None if tensorboard is None else tensorboard.write_scalars,
            distributed=distributed,
            batch_weight=batch_size * world_size / self.batch_size,
        )

    def _training_batches(self, source, indices, batch_size, meta, device, distributed):
        """Batches gathered from rows in memory (on the device when they fit), streamed from disk otherwise."""
        rank, world_size, seed = distributed.rank, distributed.world_size, meta["seed"]
        if not source.in_memory:
            return StreamingBatches(source, indices, batch_size, seed, device, rank, world_size, STREAM_BUFFER_BYTES)
        rows, neighbors = self._rows_and_neighbor_graph(source, indices, meta, self.n_neighbors, device)
        return BatchIterator(rows, batch_size, seed, rank, world_size, neighbors, device=device,
                             neighbor_samples=self.neighbor_samples)

    def _validation_chunks(self, source, indices, meta, device):
        """Validation rows held in memory when in memory or small, re-read from disk otherwise.

        With ``neighbor_weight``, rows held in memory come paired with their nearest
        neighbour among the validation rows, so that validation measures, and model
        selection and the learning-rate schedule follow, the objective being trained.
        """
        if not (source.in_memory or len(indices) * source.n_features * 4 <= STREAM_BUFFER_BYTES):
            return SourceChunks(source, indices, self.eval_batch_size, device)
        rows, neighbors = self._rows_and_neighbor_graph(source, indices, meta, 1, device)
        return TensorChunks(rows, self.eval_batch_size, None if neighbors is None else neighbors[:, 0], device=device)

    def _rows_and_neighbor_graph(self, source, indices, meta, n_neighbors, device):
        """The rows as a tensor on ``device`` if they fit there (else on the host), and with
        ``neighbor_weight`` their ``n_neighbors`` nearest neighbours' indices, beside them."""
        array = take_rows(source, indices)
        rows = torch.from_numpy(array)
        if fits_on_device(rows.nbytes, device):
            rows = rows.to(device)
        if self.neighbor_weight == 0 or len(array) < 2:
            return rows, None
        return rows, torch.from_numpy(neighbor_graph(_normalized(array, meta), n_neighbors)).to(rows.device)

    def _write_tensorboard_figures(self, tensorboard, source, indices):
        """For 2-D embeddings, the validation embedding and, for square images, the latent grid."""
        if self.n_components != 2:
            return
        from . import plotting

        try:
            rows = np.sort(np.random.default_rng(0).permutation(indices)[:5000])
            Z = self.transform(take_rows(source, rows))
            figures = {"embedding": plotting.plot_embedding(Z, title="validation data")}
            shape = plotting.square_image_shape(self.n_features_in_)
            if shape is not None:
                figures["latent_grid"] = plotting.plot_latent_grid(self, shape)
        except ImportError as exc:
            logger.warning("No embedding figures in TensorBoard: %s", exc)
            return
        for tag, figure in figures.items():
            tensorboard.write_figure(tag, figure, self.n_steps_)

    def _warn_on_stop(self, stop_reason):
        if stop_reason == "interrupted":
            warnings.warn(
                f"Training interrupted at step {self.n_steps_}; the model holds the best weights so far"
                + (f" and a checkpoint was saved in {self.logdir!r}." if self.logdir is not None else "."),
                UserWarning,
                stacklevel=3,
            )
        elif stop_reason == "diverged":
            warnings.warn(
                f"Training diverged (non-finite loss) at step {self.n_steps_} even after lowering the "
                "learning rate; the model holds the last weights with a finite validation loss. Try a "
                "lower learning_rate_init, or normalize the data.",
                RuntimeWarning,
                stacklevel=3,
            )
        elif stop_reason == "max_steps" and self.learning_rate == "adaptive":
            warnings.warn(
                f"Reached max_steps={self.max_steps} before the learning rate fell below "
                f"learning_rate_min={self.learning_rate_min}; the model may improve with more steps.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _adopt_run(self, state, meta, device):
        """Set every fitted attribute from a trainer state and run metadata."""
        self._checkpoint = state
        self._meta = meta
        self.device_ = device
        self.module_ = _build_module(meta, state["best_model"]).to(device).eval()
        self.hidden_layer_sizes_ = list(meta["model"]["hidden_sizes"])
        self.likelihood_ = meta["model"]["likelihood"]
        self.mean_ = np.asarray(meta["loc"], dtype=np.float32)
        self.scale_ = np.asarray(meta["scale"], dtype=np.float32)
        self.history_ = list(state["history"])
        self.n_steps_ = state["step"]
        self.best_validation_loss_ = state["best_loss"]
        self.stop_reason_ = state["stop_reason"]
        self.n_features_in_ = meta["n_features"]
        if meta["feature_names"] is not None:
            self.feature_names_in_ = np.asarray(meta["feature_names"], dtype=object)

    def _json_params(self):
        params = self.get_params()
        params["logdir"] = None if self.logdir is None else str(self.logdir)
        params["device"] = str(self.device)
        if not (params["random_state"] is None or isinstance(params["random_state"], Integral)):
            params["random_state"] = None
        if params["hidden_layer_sizes"] is not None:
            params["hidden_layer_sizes"] = [int(s) for s in params["hidden_layer_sizes"]]
        return json.loads(json.dumps(params))

    @classmethod
    def load(cls, logdir, *, device=None):
        """Load the fitted estimator saved in ``logdir``.

        Parameters
        ----------
        logdir : str or path-like
            Directory written by a fit with ``logdir`` set.
        device : str or torch.device, default=None
            Where to put the model; ``None`` uses the saved ``device`` parameter.

        Returns
        -------
        estimator : CompressionVAE
            Fitted, with the best validation weights; ``fit`` with ``warm_start=True``
            continues the saved run.
        """
        run = LogDir(logdir)
        saved = run.read_params()
        state = run.read_checkpoint()
        params = dict(saved["params"], logdir=str(logdir))
        if params["hidden_layer_sizes"] is not None:  # JSON has no tuples
            params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
        if device is not None:
            params["device"] = device
        estimator = cls(**params)
        estimator._adopt_run(state, saved["meta"], resolve_device(estimator.device))
        return estimator

    # ------------------------------------------------------------------ inference

    def _run_batched(self, fn, source, n_out, name):
        """Apply ``fn`` to float32 tensors of ``source``'s rows in batches.

        Returns numpy, float64 for float64 input and float32 otherwise. Rows read from a
        file or memmap are checked here, a batch at a time.
        """
        dtype = np.float64 if source.dtype == np.float64 else np.float32
        out = np.empty((source.n_samples, n_out), dtype=dtype)
        with torch.inference_mode():
            for rows in iterate_chunks(source.n_samples, self.eval_batch_size):
                batch = source.read(rows.start, rows.stop)
                if source.checked:  # NaN and infinity are already ruled out
                    check_finite_float(batch, name)
                else:
                    check_chunk(batch, name, rows, source.name)
                out[rows] = fn(_as_tensor(batch, self.device_)).cpu().numpy()
        return out

    def _check_X(self, X):
        """A row source for ``X``: an array, a .npy file, a directory of them or a memmap."""
        check_is_fitted(self)
        source = open_source(X)
        if source is None:
            return ArraySource(validate_input(self, X, reset=False), checked=True)
        if source.n_features != self.n_features_in_:
            raise ValueError(
                f"X ({source.name}) has {source.n_features} features, but CompressionVAE is expecting "
                f"{self.n_features_in_} features as input."
            )
        return source

    @staticmethod
    def _check_finite_output(out, name, source):
        if not np.isfinite(out).all():
            raise ValueError(
                f"{name} overflowed float32 for some rows: {source} lies too far outside the range "
                "of the training data for this model."
            )
        return out

    def transform(self, X):
        """Embed ``X``: the posterior mean (through the flow at zero noise, with IAF).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), path or numpy.memmap
            Data in memory, a ``.npy`` file, a directory of ``.npy`` files or a memmap;
            files are read ``eval_batch_size`` rows at a time. To write the embedding of
            data larger than memory to disk, see :func:`cvae.files.transform_to_npy`.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            float64 for float64 input, float32 otherwise.
        """
        X = self._check_X(X)
        Z = self._run_batched(self.module_.embed, X, self.n_components, "X")
        return self._check_finite_output(Z, "The embedding", "X")

    def inverse_transform(self, Z):
        """Decode latent codes to the decoder mean, in the original feature scale.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components), path or numpy.memmap
            Latent codes, in memory or in a ``.npy`` file.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self)
        source = open_source(Z, "Z")
        if source is None:
            source = ArraySource(check_latent(Z, self.n_components), name="Z", checked=True)
        elif source.n_features != self.n_components:
            raise ValueError(
                f"Z ({source.name}) has {source.n_features} columns, but this CompressionVAE has "
                f"n_components={self.n_components} latent dimensions."
            )
        X = self._run_batched(self.module_.decode_mean, source, self.n_features_in_, "Z")
        return self._check_finite_output(X, "The decoded data", "Z")

    def score_samples(self, X, n_importance_samples=1):
        """Per-sample lower bound on log p(x) in nats, in the original data scale.

        With ``n_importance_samples=1``, the evidence lower bound (ELBO), averaged over
        ``_SCORE_DRAWS`` posterior samples (the KL term is exact without flows). With
        ``k > 1``, the importance-weighted bound of Burda et al. (2016) over ``k``
        posterior samples (flow included): tighter, approaching log p(x) as ``k`` grows,
        at ``k`` decoder passes per row. The same fixed noise serves every row: each score
        is repeatable and does not depend on the other rows, their order or the batch
        size. Higher is better. Never NaN; a row far outside the training data can score
        ``-inf`` when its bound underflows float32.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), path or numpy.memmap
            As for :meth:`transform`.
        n_importance_samples : int, default=1
            ``k``; 1000 or more gives the test log-likelihoods reported in the literature.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        if not isinstance(n_importance_samples, Integral) or n_importance_samples < 1:
            raise ValueError(f"n_importance_samples must be a positive integer, got {n_importance_samples!r}.")
        X = self._check_X(X)
        k = _SCORE_DRAWS if n_importance_samples == 1 else n_importance_samples
        generator = torch.Generator().manual_seed(_SCORE_SEED)
        draws = torch.randn(k, self.n_components, generator=generator).to(self.device_)
        score = self.module_.mean_elbo if n_importance_samples == 1 else self.module_.importance_weighted_bound
        return self._run_batched(lambda batch: score(batch, draws)[:, None], X, 1, "X")[:, 0]

    def score(self, X, y=None):
        """Mean ELBO per sample in nats (higher is better), for model selection.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Generate data: draw latent codes from the prior N(0, I) and decode them.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState instance or None, default=None
            Seeds the latent draws.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_), dtype float32
            Decoder means of the drawn codes.
        """
        check_is_fitted(self)
        if not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}.")
        generator = torch.Generator().manual_seed(draw_seed(random_state))
        Z = torch.randn(n_samples, self.n_components, generator=generator).numpy()
        return self.inverse_transform(Z)

    # ------------------------------------------------------------------ scikit-learn plumbing

    @property
    def _n_features_out(self):
        return self.n_components

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def __getstate__(self):
        # The module is rebuilt from the CPU checkpoint on unpickling, so an estimator
        # trained on a GPU loads on a machine without one.
        state = self.__dict__.copy()
        state.pop("module_", None)
        state.pop("device_", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "_checkpoint" in state:
            try:
                device = resolve_device(self.device)
            except ValueError:  # saved with device="cuda", unpickled without a GPU
                device = torch.device("cpu")
            self._adopt_run(self._checkpoint, self._meta, device)


def _normalized(rows, meta):
    """``rows`` as the encoder sees them: centred and scaled by the run's statistics."""
    return (rows - np.asarray(meta["loc"], np.float32)) / np.asarray(meta["scale"], np.float32)


def _checked_chunks(source, indices, name):
    """``source``'s rows ``indices`` a buffer at a time, each checked by :func:`check_chunk`."""
    dtype = np.float64 if source.dtype == np.float64 else np.float32
    chunk_rows = max(1, STREAM_BUFFER_BYTES // (dtype().itemsize * source.n_features))
    for rows in iterate_chunks(len(indices), chunk_rows):
        chunk = take_rows(source, indices[rows], dtype)
        check_chunk(chunk, name, slice(indices[rows.start], indices[rows.stop - 1] + 1), source.name)
        yield chunk


def _as_tensor(array, device):
    """float32 tensor on ``device``; read-only arrays (e.g. memmaps) are copied, not shared."""
    array = np.asarray(array, dtype=np.float32)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, dtype=np.float32, order="C")
    return torch.from_numpy(array).to(device)


def _build_module(meta, state_dict=None):
    """The VAE described by run metadata, optionally with saved weights."""
    loc = torch.as_tensor(meta["loc"], dtype=torch.float32)
    scale = torch.as_tensor(meta["scale"], dtype=torch.float32)
    if state_dict is None:
        return VAE(loc=loc, scale=scale, **meta["model"])
    # Constructing initializes weights from torch's global generator; they are overwritten
    # at once, so keep that draw from disturbing the caller's random state.
    with isolated_rng(torch.device("cpu")):
        module = VAE(loc=loc, scale=scale, **meta["model"])
    module.load_state_dict(state_dict)
    return module
