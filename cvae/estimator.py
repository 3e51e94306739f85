"""The scikit-learn estimator: parameters, fit, transform, inverse_transform, score, sample."""

import logging
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin
from sklearn.utils import ClassifierTags

from . import _random
from ._validation import Interval, StrOptions, check_params, resolve_device
from ._inference import LABEL_TRANSFERS, InferenceMixin
from .data.inputs import training_rows, validation_rows
from .data.rows import take_rows
from .data.covariates import covariate_table
from .data.labels import fit_labels
from .nn.likelihoods import LIKELIHOODS
from .nn.init import INITIALIZERS
from .nn.mlp import ACTIVATIONS
from .nn.neighbor_loss import NEIGHBOR_OBJECTIVES
from .neighbors.placement import PLACEMENTS, NeighborReference
from .neighbors.vote import labelled_reference
from .data.preprocessing import NORMALIZATIONS
from .spec import build_module
from .training import LogDir
from .training.lifecycle import fit_run, read_run
from .training.state import checked_state
from .training.run import warn_on_stop
from .training.update import update_run
from .training.tensorboard import write_figures
from .training.trainer import PRECISIONS

__all__ = ["CompressionVAE"]

logger = logging.getLogger(__name__)


class CompressionVAE(ClassNamePrefixFeaturesOutMixin, InferenceMixin, BaseEstimator):
    """Dimensionality reduction with a variational autoencoder.

    Learns an encoder from data to a ``n_components``-dimensional latent space and a
    decoder back, by maximizing the evidence lower bound (ELBO). The embedding is a real
    function: it maps unseen data (:meth:`transform`), decodes latent points to data space
    (:meth:`inverse_transform`), scores data by its ELBO (:meth:`score_samples`) and
    generates new samples (:meth:`sample`). Measured quality and speed, and the reasons
    for the defaults: ``benchmarks/README.md`` and ``docs/design.md``.

    Parameters
    ----------
    n_components : int, default=2
        Dimension of the latent space (the embedding), 1 or more.
    hidden_layer_sizes : tuple of int, default=None
        Widths of the encoder's hidden layers; the decoder mirrors them. ``None`` chooses
        three halving layers from the number of features
        (:func:`cvae.nn.vae.default_hidden_sizes`), stored in ``hidden_layer_sizes_``.
    iaf_flow_length : int, default=0
        Inverse autoregressive flow steps on the approximate posterior, 0 or more: a more
        flexible posterior and a tighter ELBO, at more cost per step.
    likelihood : {"auto", "gaussian", "bernoulli", "poisson", "negative_binomial", "zinb"}, \
default="auto"
        Decoder distribution. ``"gaussian"`` decodes a mean with one learned variance per
        feature (bounded below, so constant features cannot drive the loss to minus
        infinity); ``"bernoulli"`` is for data in [0, 1] such as pixel intensities, or
        8-bit pixel values (whole numbers in [0, 255] reaching 255), which it models divided
        by 255 and decodes back to [0, 255] (``spec_.upper``). For counts (non-negative
        whole numbers, e.g. single-cell RNA): ``"poisson"``, ``"negative_binomial"`` (a
        learned dispersion per feature) and ``"zinb"`` (zero-inflated negative binomial)
        decode proportions that the row's observed total scales
        (:mod:`cvae.nn.likelihoods`); the encoder sees ``log1p`` of the counts, normalized.
        ``"auto"`` picks ``"bernoulli"`` when every training and validation value lies in
        [0, 1], or is an 8-bit pixel value (saying so in a warning before training), else
        ``"gaussian"``, never a count likelihood (whole numbers are not always counts:
        docs/data.md); the choice is stored in ``likelihood_``.
    beta : float, default=1.0
        Weight of the KL term (beta-VAE), 0 or more; 1 gives the true ELBO.
    kl_warmup_steps : int, default=0
        Steps over which the KL weight ramps linearly from 0 to ``beta``.
    free_bits : float, default=0.0
        Nats of KL per latent dimension that training does not penalize (Kingma et al.,
        2016), so that no dimension gains by collapsing onto the prior; with IAF, the
        total is held at ``free_bits * n_components``. Reported losses stay the true ELBO.
    reconstruction_fraction : float in (0, 1] or "auto", default="auto"
        Share of each training batch whose reconstruction term is computed (its first rows,
        the batch being shuffled: an unbiased estimate of the whole batch's); the KL and
        neighbour terms still see every row, validation every term. Below 1 a step decodes
        fewer rows, which pays most for wide count data, where the likelihood's
        log-probabilities cost as much as the layers (benchmarks/README.md, "Routes to
        fewer FLOPs"); 1 is the exact minibatch ELBO. ``"auto"`` is 0.25 for a fit with
        ``covariates`` and the neighbour term but no classifier (``classifier_weight=0``),
        where the batch-balanced graph carries the integration and a quarter keeps its
        quality in less time (benchmarks/README.md, "Covariates"), and 1 otherwise (the
        value used is ``reconstruction_fraction_``).
    neighbor_weight : float or "auto", default="auto"
        Weight, 0 (off) or more, of a term that keeps each training row's ``n_neighbors``
        nearest neighbours close in the embedding, times ``n_features_in_`` so that one
        weight suits data of any width. ``"auto"`` is 0.4 (the value used is
        ``neighbor_weight_``). Validation includes the term. It trades likelihood for
        neighbourhoods: the ELBO, ``score_samples`` and reconstructions of a model with it
        are those of a VAE pulled away from its best fit; for likelihood figures set
        ``neighbor_weight=0``, the plain VAE (measured in benchmarks/README.md, "Time to
        quality").
    n_neighbors : int, default=15
        Neighbours per row for ``neighbor_weight`` and for ``placement``, 1 or more. The
        graph is found once per fit in the normalized training rows; above 10,000 rows of
        more than 100 features, among the rows' first 50 principal components (found by
        an incremental PCA for rows streamed from files), and approximately above 100,000
        rows where pynndescent is installed (:func:`cvae.neighbors.search.neighbor_graph`).
        With a ``logdir`` it is kept there, and a continued run on the same rows reads it.
    neighbor_samples : int, default=1
        Neighbours drawn for each row of a training batch, 1 or more; each is encoded
        once more per step, so a step costs more but sees more neighbour pairs.
    neighbor_objective : {"tsne", "umap"}, default="tsne"
        The neighbour term: ``"tsne"``, InfoNCE under a Cauchy kernel, close to t-SNE's
        normalized objective (:func:`cvae.nn.neighbor_loss.contrastive_neighbor_loss`);
        ``"umap"``, UMAP's fuzzy cross-entropy with negative sampling
        (:func:`cvae.nn.neighbor_loss.neighbor_loss`), whose neighbourhoods measured worse.
    placement : {"auto", "encoder", "neighbors"}, default="auto"
        How :meth:`transform` embeds rows. ``"encoder"``: the encoder's posterior mean, a
        function of the row alone. ``"neighbors"``: the fit keeps its training rows (in
        the normalized space, projected onto 50 principal components when wider than 100
        features: the model grows by that array) and places a row at the median
        embedding of its ``n_neighbors`` nearest training rows, refined for 30 steps
        against the fixed training embedding (:class:`cvae.neighbors.placement.NeighborReference`),
        as UMAP and openTSNE place unseen rows; a training row keeps its own embedding.
        Unseen rows then keep their neighbourhoods as well as the training rows do, at
        thousands to tens of thousands of rows per second instead of the encoder's
        hundred thousands; the encoder's map trails it on unseen rows
        (benchmarks/README.md, "Placing unseen rows" and "The encoder's own map").
        ``"auto"`` is ``"neighbors"`` with the neighbour term and training rows in memory,
        else ``"encoder"`` (for rows streamed from files, set ``"neighbors"``); it may
        be changed after fitting, between ``"encoder"`` and what the fit kept.
        :meth:`export` writes whichever the placement is (``part="transform"``).
        :meth:`inverse_transform`, :meth:`score_samples` and :meth:`sample` use the
        encoder and decoder whatever the placement.
    target_weight : float, default=0.5
        How much class labels given to :meth:`fit` shape the embedding, in [0, 1], as in
        UMAP: 0 is the data alone, 1 lets the labels dominate. The labels act through the
        neighbour term (so ``neighbor_weight`` must be above 0): a training row's
        neighbours of another class are replaced by neighbours of its own in this
        proportion; unlabelled rows take the class that spreads to them over the graph
        where it is clear (:mod:`cvae.data.labels`; measured in benchmarks/README.md, "Labels").
    classifier_weight : float, default=0.0
        With class labels given to :meth:`fit` and above 0, the model gains a classifier of
        the classes that reads the encoder's last hidden layer (M2's q(y | x), as scANVI's
        classifier is trained with its model), and each training step adds this weight
        times its cross-entropy on a batch of labelled rows, scaled like the reconstruction
        term (a sum over features); :meth:`predict` and :meth:`predict_proba` then use it
        (``label_transfer``). 0 (no classifier): they vote among the nearest labelled rows in
        the embedding. 0 or more; about 1 (0.1 to 10) where it helps. The classifier reads
        more than the embedding's few dimensions: it carried cell types across batches of
        real cells better than the vote, and labelled digits worse (benchmarks/README.md,
        "Label transfer").
    label_transfer : {"auto", "vote", "classifier"}, default="auto"
        What :meth:`predict` and :meth:`predict_proba` give, for a model fitted with ``y``:
        ``"vote"``, the calibrated vote of the nearest labelled training rows in the
        embedding (which needs the rows the fit stores); ``"classifier"``, the classifier
        trained with the model (which needs a fit with ``classifier_weight`` above 0);
        ``"auto"``, the classifier where the model has one, else the vote. Read when
        predicting: it may be set after the fit. The vote of a model fitted with a
        classifier reads an embedding the classifier's term also shaped.
    landmark_weight : float, default=1.0
        How firmly :meth:`partial_fit` keeps the rows a fit stored (its landmarks) where
        they were in the embedding while it learns new rows, 0 (not at all) or more; scaled
        like the reconstruction term, a sum over features. Above 0, :meth:`partial_fit`
        also replays earlier rows beside new ones. :meth:`fit` does not use it. A higher
        ``neighbor_weight`` set before the :meth:`partial_fit` calls lets new classes part
        from earlier ones, and moves the earlier rows more; so do a few first passes at a
        small weight such as 0.01 (replay stays on) before the rest at the full one, which
        brings the earlier rows back (``examples/add_classes.py``; measured in
        benchmarks/README.md, "partial_fit").
    freeze_reference : bool, default=False
        How :meth:`partial_fit` maps rows of new covariate categories (a new batch).
        ``False``: every weight trains, the new categories' columns too, while the
        landmarks hold the reference where it was (``landmark_weight``), as every update
        does: the reference moves a little and the new batch mixes with it nearly as a
        joint fit would. ``True``, or without landmarks (``landmark_weight=0`` or
        ``store_rows=False``): the new categories' columns alone train, every other weight
        held, so that the reference embeds and decodes exactly as before (as scArches maps
        a query). Measured in benchmarks/README.md, "Covariates".
    store_rows : bool, default=True
        Whether the fitted model (its ``logdir`` checkpoint and its pickle) keeps raw
        training rows: a uniform sample of them that :meth:`partial_fit` replays, and the
        landmarks it keeps in place (at most ``RESERVOIR_ROWS`` and ``LANDMARKS`` rows).
        ``False`` keeps no training data of any kind: :meth:`partial_fit` then learns new
        rows alone (no replay, no landmarks), and ``placement="auto"`` is ``"encoder"``,
        since the neighbour placement keeps every training row, projected
        (``"neighbors"`` is refused). What a model file holds: docs/data.md.
    activation : {"relu", "elu", "gelu", "tanh"}, default="relu"
        Hidden-layer non-linearity.
    dropout : float, default=0.0
        Dropout probability in the hidden layers during training, in [0, 1).
    initializer : {"orthogonal", "truncated_normal", "lecun_normal", "default"}, \
default="orthogonal"
        Weight initialization; ``"default"`` keeps PyTorch's.
    normalize : {"global", "feature", "none"}, default="global"
        Normalization inside the model (inputs and outputs stay in the data's scale):
        ``"global"`` centers each feature and divides all by one scale, as PCA weighs them;
        ``"feature"`` standardizes each feature, for features in unrelated units
        (:func:`cvae.data.preprocessing.normalization_statistics`).
    layer : str, default=None
        For AnnData input (in memory or an ``.h5ad`` file), the key of ``layers`` to read
        instead of ``X``, e.g. raw counts; other inputs ignore it.
    batch_size : int, default=512
        Training mini-batch size, 1 or more. Under ``torchrun`` these rows are split
        across the processes, so a step sees the same rows on any number of them.
    eval_batch_size : int, default=4096
        Rows per batch for validation and for the methods after fitting, 1 or more.
    learning_rate : {"cosine", "adaptive", "constant"}, default="cosine"
        ``"adaptive"`` divides the rate by ``learning_rate_factor`` after ``patience``
        validations without improvement and stops once it falls below
        ``learning_rate_min``; ``"constant"`` keeps ``learning_rate_init`` for
        ``max_steps``; ``"cosine"`` warms up over the first 5% of ``max_steps``, then
        decays along a half cosine to ``learning_rate_min`` at ``max_steps``. How the
        default schedule was chosen: benchmarks/README.md, "Time to quality".
    learning_rate_init : float, default=3e-3
        Initial (for ``"cosine"``, peak) Adam learning rate, above 0.
    max_steps : int or "auto", default="auto"
        Budget of optimization steps over all warm-started fits of one run, 1 or more.
        ``"auto"`` counts passes over the training rows at ``batch_size``, fewer with the
        neighbour term, more over small data (whose passes are few steps), fewer per row
        over large data with the neighbour term, at most ``AUTO_MAX_STEPS`` steps, which
        is also the budget with ``learning_rate="adaptive"``, whose plateau rule ends the
        fit (the rule: :func:`cvae.training.run.step_budget`). Resolved: ``max_steps_``.
    validation_fraction : float, default=0.1
        Fraction of ``X`` held out (seeded random split) when ``X_valid`` is not given,
        in (0, 1).
    validation_interval : int, default=500
        Steps between validations. Each uses the whole validation set with the same
        posterior noise, so successive losses compare models rather than samples.
    patience : int, default=5
        Validations without a new best before the learning rate is divided.
    learning_rate_factor : float, default=5.0
        Divisor of the learning rate on a plateau, above 1.
    learning_rate_min : float, default=1e-5
        Training has converged when the rate falls below this.
    tol : float, default=0.0
        A validation loss improves when it beats the best by more than ``tol`` nats.
    n_iter_no_change : int, default=None
        Stop after this many validations in a row without improvement (early stopping), 1
        or more, keeping the best weights; ``None`` trains until the learning-rate rule or
        ``max_steps`` ends the fit.
    checkpoint_interval : int, default=2000
        Steps between checkpoints in ``logdir`` (one is also written at the end).
    logdir : str or path-like, default=None
        Directory of the run (:mod:`cvae.training.logdir`); ``None`` writes nothing. A
        fit holds its lock: a second fit into it fails.
    tensorboard : bool, default=False
        TensorBoard event files in ``logdir`` (the ``tensorboard`` extra): scalars per
        validation, and figures of a 2-D model (the ``plot`` extra).
    warm_start : bool, default=False
        Continue the previous run (the fitted model in memory, or else the checkpoint in
        ``logdir``): step count, optimizer, schedule and random state carry on. The
        architecture parameters must then be those of the run (or ``None``/``"auto"``).
    device : str or torch.device, default="auto"
        ``"auto"`` picks CUDA, then Apple MPS, then CPU.
    precision : {"auto", "float32", "bfloat16", "float16"}, default="auto"
        Arithmetic of the training steps: 16 bits are mixed precision (matrix products
        under ``torch.autocast``, all else float32), for hardware that multiplies them
        natively (AMX or AVX-512 BF16 CPUs, CUDA GPUs; ``"float16"`` before Ampere).
        ``"auto"`` picks ``"bfloat16"`` where the device multiplies it natively and a
        step is large enough to gain (MNIST's default model, not digits'), else
        ``"float32"`` (:func:`cvae.training.environment.resolve_precision`), so the same
        seed can give another model on another machine; what it gains and costs is
        measured in benchmarks/README.md, "bfloat16".
    compile : bool, default=False
        Train through ``torch.compile`` (slower first step; a C++ compiler on the CPU). It
        draws the same noise as the eager fit, and gives its model up to rounding.
    n_jobs : int >= 1 or None, default=None
        CPU threads the training steps run on. ``None`` chooses: one thread for small
        models (digits-sized), else torch's thread count lowered to the CPUs that other
        running processes leave free when the fit starts, so that a fit beside other work
        slows by its share of the cores rather than many times more
        (:func:`cvae.training.environment.threads_for_step`; measured in
        benchmarks/README.md, "Threads"). Other devices ignore it.
    random_state : int, RandomState instance or None, default=None
        Seeds the split, the initialization and every random draw of training. On the
        CPU, the same seed and the same number of threads give the same model bit for bit;
        with ``n_jobs=None`` a large model's thread count follows the machine's load, so
        set ``n_jobs`` to get the same model on a busy machine.
    verbose : bool, default=False
        A progress bar in a terminal or notebook (the ``progress`` extra), else one log
        line per validation (INFO, logger ``cvae.training.trainer``).

    Attributes
    ----------
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen during fit, when ``X`` had string column names.
    spec_ : cvae.spec.RunSpec
        What the fitted model is: architecture, likelihood, normalization, seed.
    hidden_layer_sizes_ : list of int
        Encoder widths used.
    likelihood_ : str
        Decoder likelihood used (``likelihood="auto"`` resolved).
    neighbor_weight_ : float
        Weight of the neighbour term used (``neighbor_weight="auto"`` resolved).
    reconstruction_fraction_ : float
        Share of each batch reconstructed in the last fit (``reconstruction_fraction="auto"``
        resolved).
    max_steps_ : int
        Step budget of the last fit (``max_steps="auto"`` resolved).
    precision_ : str
        Arithmetic the last fit trained in (``precision="auto"`` resolved).
    n_threads_ : int
        CPU threads the last fit trained on.
    embedding_ : ndarray of shape (n_rows, n_components)
        The encoder's embedding of the training rows (with the validation rows held out of
        ``X``) that place unseen rows, or after :meth:`partial_fit` of the sample of rows
        it keeps; only when the fit kept them (``placement``).
    data_range_ : (float, float)
        Smallest and largest value of the training data.
    classes_ : ndarray of shape (n_classes,)
        The class labels given to :meth:`fit` (sorted); only after a fit with ``y``.
    device_ : torch.device
        Device the model lives on.
    module_ : cvae.nn.VAE
        The fitted torch module, in evaluation mode, with the best validation weights.
    mean_, scale_ : ndarray of shape (n_features_in_,)
        Normalization statistics (0 and 1 when ``normalize="none"``).
    history_ : list of dict
        One row per validation: ``step``, ``train_loss``, ``validation_loss`` (what
        training minimizes: the negative ELBO with ``beta``, plus the neighbour term when
        ``neighbor_weight > 0``), ``validation_log_likelihood``, ``validation_kl``,
        ``validation_elbo`` (the ELBO alone, log-likelihood less KL, as :meth:`score`
        gives it; absent from runs saved before it was logged), ``learning_rate``,
        ``elapsed_seconds``.
    n_steps_ : int
        Optimization steps taken so far.
    best_validation_loss_ : float
        Lowest validation loss per sample, in nats: the negative ELBO (with ``beta``), plus
        the neighbour term when ``neighbor_weight > 0``; not a likelihood then (the ELBO
        alone is the ``validation_elbo`` of ``history_``).
    stop_reason_ : {"converged", "no_improvement", "max_steps", "interrupted", "diverged"}
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
        "reconstruction_fraction": [Interval(Real, 0, 1, closed="right"), StrOptions({"auto"})],
        "neighbor_weight": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "neighbor_samples": [Interval(Integral, 1, None, closed="left")],
        "neighbor_objective": [StrOptions(set(NEIGHBOR_OBJECTIVES))],
        "placement": [StrOptions(set(PLACEMENTS))],
        "target_weight": [Interval(Real, 0, 1, closed="both")],
        "classifier_weight": [Interval(Real, 0, None, closed="left")],
        "label_transfer": [StrOptions(set(LABEL_TRANSFERS))],
        "landmark_weight": [Interval(Real, 0, None, closed="left")],
        "freeze_reference": ["boolean"],
        "store_rows": ["boolean"],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "initializer": [StrOptions(set(INITIALIZERS))],
        "normalize": [StrOptions(set(NORMALIZATIONS))],
        "layer": [str, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "eval_batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"adaptive", "constant", "cosine"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "max_steps": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "validation_interval": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 0, None, closed="left")],
        "learning_rate_factor": [Interval(Real, 1, None, closed="neither")],
        "learning_rate_min": [Interval(Real, 0, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), None],
        "checkpoint_interval": [Interval(Integral, 1, None, closed="left")],
        "logdir": [str, Path, None],
        "tensorboard": ["boolean"],
        "warm_start": ["boolean"],
        "device": [str, torch.device],
        "precision": [StrOptions(set(PRECISIONS) | {"auto"})],
        "compile": ["boolean"],
        "n_jobs": [Interval(Integral, 1, None, closed="left"), None],
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
        reconstruction_fraction="auto",
        neighbor_weight="auto",
        n_neighbors=15,
        neighbor_samples=1,
        neighbor_objective="tsne",
        placement="auto",
        target_weight=0.5,
        classifier_weight=0.0,
        label_transfer="auto",
        landmark_weight=1.0,
        freeze_reference=False,
        store_rows=True,
        activation="relu",
        dropout=0.0,
        initializer="orthogonal",
        normalize="global",
        layer=None,
        batch_size=512,
        eval_batch_size=4096,
        learning_rate="cosine",
        learning_rate_init=3e-3,
        max_steps="auto",
        validation_fraction=0.1,
        validation_interval=500,
        patience=5,
        learning_rate_factor=5.0,
        learning_rate_min=1e-5,
        tol=0.0,
        n_iter_no_change=None,
        checkpoint_interval=2000,
        logdir=None,
        tensorboard=False,
        warm_start=False,
        device="auto",
        precision="auto",
        compile=False,
        n_jobs=None,
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
        self.reconstruction_fraction = reconstruction_fraction
        self.neighbor_weight = neighbor_weight
        self.n_neighbors = n_neighbors
        self.neighbor_samples = neighbor_samples
        self.neighbor_objective = neighbor_objective
        self.placement = placement
        self.target_weight = target_weight
        self.classifier_weight = classifier_weight
        self.label_transfer = label_transfer
        self.landmark_weight = landmark_weight
        self.freeze_reference = freeze_reference
        self.store_rows = store_rows
        self.activation = activation
        self.dropout = dropout
        self.initializer = initializer
        self.normalize = normalize
        self.layer = layer
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
        self.n_iter_no_change = n_iter_no_change
        self.checkpoint_interval = checkpoint_interval
        self.logdir = logdir
        self.tensorboard = tensorboard
        self.warm_start = warm_start
        self.device = device
        self.precision = precision
        self.compile = compile
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fitting

    def fit(self, X, y=None, sample_weight=None, *, X_valid=None, covariates=None):
        """Fit the VAE to ``X``.

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features), path, \
numpy.memmap or anndata.AnnData
            Training data: in memory (dense, or a ``scipy.sparse`` matrix densified a batch at
            a time), or streamed from a ``.npy`` file, a directory tree of ``.npy`` files
            (sorted path order), a ``numpy.memmap`` or an ``.h5ad`` file, a buffer at a
            time; a sparse ``.npz`` file is read into memory (docs/data.md).
        y : array-like of shape (n_samples,) or path, default=None
            Class labels, which shape the embedding as ``target_weight`` says: integers
            with -1 for unlabelled rows, or strings with ``None`` for unlabelled rows
            (:func:`cvae.data.labels.check_labels`); a file of them, or for an AnnData ``X``
            the name of a column of its ``obs`` (:func:`cvae.data.labels.fit_labels`).
            ``None`` fits the data alone. In a :class:`~sklearn.pipeline.Pipeline`, the
            pipeline's y arrives here: set ``target_weight=0`` to keep the embedding
            unsupervised. The classes are ``classes_``; a continued run takes no others.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weight of each row of ``X`` in the training and validation loss
            and in the normalization statistics. A row of weight zero is left out, exactly
            as if ``X`` lacked it; integer weights act as repeated rows, in expectation.
        X_valid : array-like, path or numpy.memmap, default=None
            Validation data. If None, ``validation_fraction`` of ``X``'s rows is held out
            (saved in ``logdir``, so a continued run validates on the same rows). Not with
            ``covariates``.
        covariates : array-like, DataFrame, str or list of str, default=None
            What each row was measured under (its batch, donor, a dose), which the encoder
            and the decoder are conditioned on, so that the embedding need not hold it: a
            1-D array-like (one categorical covariate), a DataFrame (category, object,
            bool and integer columns categorical, float columns continuous, standardized),
            a 2-D array (a covariate per column), a file of one value per row, or for an
            AnnData ``X`` the names of ``obs`` columns (a list, or separated by commas).
            Every later call on the rows (:meth:`transform`, :meth:`score_samples`) takes
            theirs; :meth:`inverse_transform` and :meth:`sample` decode under any.
            docs/covariates.md.

        Returns
        -------
        self : CompressionVAE
            Fitted; after Ctrl-C, with the best model so far (and a checkpoint in ``logdir``).
        """
        return self._fit(X, y, sample_weight, X_valid, covariates)

    def fit_transform(self, X, y=None, sample_weight=None, *, X_valid=None, covariates=None):
        """Fit to ``X`` and embed it: ``fit(X, ...).transform(X, covariates)``.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
        """
        return self.fit(X, y, sample_weight, X_valid=X_valid, covariates=covariates).transform(X, covariates)

    def partial_fit(self, X, y=None, sample_weight=None, covariates=None):
        """Update the model with one pass over the rows of ``X``.

        The first call (on an estimator that is not fitted, and whose ``logdir`` holds no
        run) sets the model up: its normalization statistics and likelihood come from
        this first ``X``, as ``fit``'s come from its data. Each call then takes
        ``ceil(n / batch_size)`` steps, ``n`` its rows and those it replays (below), at
        the constant rate ``learning_rate_init``,
        with the optimizer's moments carried over between calls, and keeps the weights it
        ends with. Every run keeps a uniform sample of the distinct rows it has trained on
        (``RESERVOIR_ROWS``, fewer for wide rows). With ``landmark_weight`` above 0, a call
        on an estimator that has trained (by ``fit``, earlier calls, or a run in ``logdir``,
        which it continues as ``warm_start`` would) trains, for ``X`` in memory, on rows
        drawn from that sample beside ``X`` (replay: as many as ``X`` has, at least
        ``REPLAY_MIN_ROWS``), so that its neighbour graph links new rows to earlier ones
        and the earlier data is not forgotten; after a fit it also keeps the rows that fit
        stored (``LANDMARKS`` of its training rows) where they were in the embedding, with
        weight ``landmark_weight``. For ``placement`` (with the neighbour term and ``X`` in
        memory, or ``"neighbors"``), the sample is embedded anew by each call's weights,
        and :meth:`transform` places unseen rows by it as after ``fit``. Measured in
        benchmarks/README.md, "partial_fit".

        Parameters
        ----------
        X : array-like, sparse matrix, path, numpy.memmap or anndata.AnnData
            As for :meth:`fit`; every row trains, and the call validates on them.
        y : array-like of shape (n_samples,), default=None
            As for :meth:`fit`; the classes of later calls must be among the first's.
        sample_weight : array-like of shape (n_samples,), default=None
        covariates : array-like, DataFrame, str or list of str, default=None
            As for :meth:`fit`: the first call sets which covariates the model is
            conditioned on, and every later call gives them. A call whose categorical
            covariates hold categories the model lacks (a new batch) adds them: a weight
            column for each, started as the average of its covariate's others, and trains
            for the steps a fit on the call's rows would take (``max_steps``): every weight,
            the landmarks holding the reference in place, or with ``freeze_reference`` the
            new columns alone, so that the reference embeds exactly as before (as scArches
            maps a query). docs/covariates.md.

        Returns
        -------
        self : CompressionVAE
        """
        def rows(replay):  # every row trains (with the replayed ones), and the update validates on them
            rows_x, labels, weights, table = replay(X, fit_labels(X, y), covariate_table(covariates, X))
            source = training_rows(self, rows_x)
            return source, source, labels, getattr(self, "feature_names_in_", None), weights, table

        return self._train(update_run, rows, sample_weight)

    def _fit(self, X, y, sample_weight, X_valid, covariates):
        def rows():  # training_rows records n_features_in_ (and feature_names_in_)
            source = training_rows(self, X)
            valid = None if X_valid is None else validation_rows(self, X_valid)
            table = covariate_table(covariates, X)
            return source, valid, fit_labels(X, y), getattr(self, "feature_names_in_", None), table

        return self._train(fit_run, rows, sample_weight)

    def _train(self, run_fit, rows, sample_weight):
        """Train with ``run_fit`` (:func:`cvae.training.lifecycle.fit_run` or
        :func:`cvae.training.update.update_run`) and adopt its run; a refused X leaves a
        fitted model as it was."""
        self._check_params()
        fitted = (self.spec_, self._checkpoint) if hasattr(self, "spec_") else None
        # A refused X must not leave its width or column names behind on a fitted model.
        checked = {name: self.__dict__[name] for name in ("n_features_in_", "feature_names_in_")
                   if name in self.__dict__}
        try:
            run = run_fit(self.get_params(), rows, sample_weight, fitted)
        except BaseException:
            if fitted is not None:
                for name in ("n_features_in_", "feature_names_in_"):
                    self.__dict__.pop(name, None)
                self.__dict__.update(checked)
            raise
        self._adopt_run(run.spec, run.state, run.device)
        if self.tensorboard and self.logdir is not None and run.distributed.is_main:
            self._write_figures(run.data.valid)
        if run.distributed.is_main:
            warn_on_stop(run.plan, run.state)
        return self

    def _write_figures(self, rows):
        """TensorBoard figures of (up to 5,000 of) the validation ``rows``."""
        from .plotting import tensorboard_figures

        if self.spec_.covariates is not None:
            logger.info("No embedding figures in TensorBoard: they are not drawn for a model with covariates.")
            return
        chosen = np.sort(_random.rng("figures").permutation(rows.indices)[:5000])
        try:
            figures = tensorboard_figures(self, take_rows(rows.source, chosen))
        except ImportError as exc:
            logger.warning("No embedding figures in TensorBoard: %s", exc)
            return
        write_figures(LogDir(self.logdir).path, figures, self.n_steps_)

    def _check_params(self):
        """``_parameter_constraints`` and the checks they cannot express (in ``fit`` and ``load``)."""
        self._validate_params()
        check_params(self)

    def _adopt_run(self, spec, state, device):
        """Set every fitted attribute from a run specification and a trainer state."""
        self._checkpoint = state
        self.spec_ = spec
        self.device_ = device
        self.module_ = build_module(spec, state["best_model"]).to(device).eval()
        self.hidden_layer_sizes_ = list(spec.model.hidden_sizes)
        self.likelihood_ = spec.model.likelihood
        self.mean_, self.scale_ = spec.loc.copy(), spec.scale.copy()
        self.history_ = list(state["history"])
        self.n_steps_ = state["step"]
        self.best_validation_loss_ = state["best_loss"]
        self.stop_reason_ = state["stop_reason"]
        # What "auto" resolved to is saved at the end of a fit: a checkpoint written during a
        # fit, or by a version before these parameters, knows only the parameters.
        resolved = state.get("resolved", {})
        weight, budget, fraction = (resolved.get(name, getattr(self, name))
                                    for name in ("neighbor_weight", "max_steps", "reconstruction_fraction"))
        self.neighbor_weight_ = None if weight == "auto" else float(weight)
        self.max_steps_ = None if budget == "auto" else int(budget)
        self.reconstruction_fraction_ = None if fraction == "auto" else float(fraction)
        self.precision_ = resolved.get("precision")
        self.n_threads_ = resolved.get("threads")
        self.data_range_ = tuple(state["data_range"]) if "data_range" in state else None
        for name in ("classes_", "embedding_", "feature_names_in_"):  # of an earlier fit, where this one has none
            self.__dict__.pop(name, None)
        self._labelled = None
        if "classes" in state:
            self.classes_ = np.asarray(state["classes"])
            self._labelled = labelled_reference(self.module_, state.get("labelled"), device)
        self._reference = None
        if state.get("reference") is not None:
            self._reference = NeighborReference.from_state(state["reference"], spec.model.n_latent,
                                                           "the checkpoint").to(device)
            self.embedding_ = self._reference.embedding.cpu().numpy()
        self.n_features_in_ = spec.n_features
        if spec.feature_names is not None:
            self.feature_names_in_ = np.asarray(spec.feature_names, dtype=object)

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
        run, params, spec, state = read_run(logdir, cls._get_param_names(), device)
        estimator = cls(**params)
        try:
            estimator._check_params()
        except (ValueError, TypeError) as exc:
            raise ValueError(f"Cannot read {run.file(run.PARAMS)}: {exc}") from exc
        try:
            estimator._adopt_run(spec, state, resolve_device(estimator.device))
        except RuntimeError as exc:  # torch's load_state_dict: weights of another architecture
            raise ValueError(
                f"Cannot read {run.path}: the model {run.file(run.PARAMS)} describes does not match the weights in "
                f"{run.file(run.CHECKPOINT)} ({str(exc).splitlines()[0]})"
            ) from exc
        return estimator

    @property
    def _n_features_out(self):
        # the fitted model's, whatever n_components was set to since
        return self.spec_.model.n_latent if hasattr(self, "spec_") else self.n_components

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = True
        tags.classifier_tags = ClassifierTags()  # predict and predict_proba, after a fit with y
        return tags

    def __getstate__(self):
        # Rebuilt on unpickling from the spec and the CPU checkpoint (which holds the neighbour
        # reference too), so an estimator trained on a GPU loads on a machine without one.
        state = self.__dict__.copy()
        for name in ("module_", "device_", "_reference", "embedding_", "_labelled"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "spec_" in state:
            try:
                device = resolve_device(self.device)
            except ValueError:  # saved with device="cuda", unpickled without a GPU
                device = torch.device("cpu")
            self._checkpoint = checked_state(self._checkpoint, self.spec_, "the pickled estimator's checkpoint")
            self._adopt_run(self.spec_, self._checkpoint, device)
