"""What a fitted model does with rows: embed, decode, score and generate them, a batch at a
time (:class:`InferenceMixin`, the fitted half of :class:`cvae.CompressionVAE`)."""

import math
from functools import partial

import numpy as np
import torch
from sklearn.base import TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _random
from ._validation import check_chunk, check_finite_float, check_positive, check_positive_int, draw_seed
from .data.rows import iterate_chunks
from .export import export_module
from .data.covariates import CovariateSource, covariate_table
from .data.inputs import input_rows, latent_rows
from .nn.likelihoods import check_count_rows
from .neighbors.placement import PLACEMENTS
from .neighbors.vote import class_votes, vote_smoothing

__all__ = ["InferenceMixin", "run_batched"]

# score_samples averages this many posterior draws, from a fixed stream, shared by all rows:
# repeatable, independent of the other rows, and a mean over rows that does not carry the
# noise of a single draw.
_SCORE_DRAWS = 8
# How predict gives classes (the estimator's label_transfer).
LABEL_TRANSFERS = ("auto", "vote", "classifier")


def _place(reference, standardize, n_neighbors, rows):
    return reference.place(standardize(rows), n_neighbors)


class InferenceMixin(TransformerMixin):
    """The methods of a fitted :class:`cvae.CompressionVAE` that apply its model to rows.

    They read the fitted attributes (``spec_``, ``module_``, ``device_``, the placement
    reference) and the parameters that inference uses (``eval_batch_size``,
    ``placement``, ``n_neighbors``, ``label_transfer``), which may be set after the fit. A
    ``TransformerMixin``, so that ``set_output`` wraps :meth:`transform` here.
    """

    def _check_fitted(self):
        check_is_fitted(self)
        self._check_positive_int("eval_batch_size")

    def _check_positive_int(self, name):
        """A parameter that inference reads, which may have been set since fit."""
        check_positive_int(getattr(self, name), name)

    def _run_batched(self, fn, source, n_out, name, what, check=None):
        out = run_batched(fn, source, n_out, self.eval_batch_size, self.device_, name, check)
        if not np.isfinite(out).all():
            raise ValueError(
                f"{what} overflowed float32 for some rows: {name} lies too far outside the range "
                "of the training data for this model."
            )
        return out

    def _conditioned(self, source, covariates, X=None, broadcast=False):
        """``source``'s rows with their encoded ``covariates`` after them, for a model
        conditioned on covariates; ``source`` itself for one without. ``X`` is what the
        caller was given (an AnnData's obs columns can be named); with ``broadcast``, one
        row of covariates serves every row."""
        spec = self.spec_.covariates
        if spec is None:
            if covariates is not None:
                raise ValueError("covariates were given, but this model was fitted without covariates.")
            return source
        table = covariate_table(covariates, X)
        if table is None:
            raise ValueError(f"This model is conditioned on the covariates {list(spec.names)}: pass covariates= with "
                             "one value per row (or, for an AnnData X, the names of its obs columns).")
        if broadcast and all(len(values) == 1 for _, values in table):
            table = [(name, np.repeat(np.asarray(values), source.n_samples)) for name, values in table]
        return CovariateSource(source, spec.encode(table, source.n_samples))

    def _count_check(self, whole_numbers):
        """What a count model checks of its input rows (``None`` for other likelihoods)."""
        if not self.spec_.is_count:
            return None
        return partial(check_count_rows, likelihood=self.likelihood_, whole_numbers=whole_numbers)

    def transform(self, X, covariates=None):
        """Embed ``X``: the posterior mean (through the flow at zero noise, with IAF).

        Parameters
        ----------
        X : array-like or sparse matrix of shape (n_samples, n_features), path, numpy.memmap \
or anndata.AnnData
            As for :meth:`fit`, read ``eval_batch_size`` rows at a time (to disk:
            :func:`cvae.files.transform_to_npy`).
        covariates : array-like, DataFrame or str, default=None
            For a model fitted with covariates, those of ``X``'s rows, as :meth:`fit` takes
            them; categories must be among those it was fitted with.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            float64 for float64 input, float32 otherwise.
        """
        self._check_fitted()
        reference = self._placement_reference()
        if reference is None:
            embed = self.module_.embed
        else:
            embed = partial(_place, reference, self.module_.standardize, self.n_neighbors)
        source = self._conditioned(input_rows(self, X), covariates, X)
        return self._run_batched(embed, source, self.spec_.model.n_latent, "X", "The embedding",
                                 self._count_check(whole_numbers=False))

    def _placement_reference(self):
        """The training rows that place unseen rows (``placement``), or ``None`` for the encoder."""
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(map(repr, PLACEMENTS))}, got {self.placement!r}.")
        self._check_positive_int("n_neighbors")
        if self.placement == "neighbors" and self._reference is None:
            raise ValueError(
                "placement='neighbors' needs the training rows, which this model did not keep: it was fitted with "
                "placement='encoder', or with placement='auto' and neighbor_weight=0, or its run was stopped "
                "before its end. Set placement='encoder' or 'auto', or fit with placement='neighbors'."
            )
        return None if self.placement == "encoder" else self._reference

    def inverse_transform(self, Z, library_size=None, covariates=None):
        """Decode latent codes to the decoder mean, in the original feature scale.

        Parameters
        ----------
        Z : array-like of shape (n_samples, n_components), path or numpy.memmap
            Latent codes, in memory or in a ``.npy`` file.
        library_size : float, default=None
            Count likelihoods only: the total (library size) of the decoded rows, above 0.
            ``None`` decodes at the mean total of the training rows (``spec_.library_size``).
        covariates : array-like or DataFrame, default=None
            For a model fitted with covariates, those to decode under, one row per code or
            one for all: the rows as if measured under them (a counterfactual: "this cell
            as batch 2").

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_)
            Decoder means: expected counts at ``library_size`` under a count likelihood.
        """
        self._check_fitted()
        source = self._conditioned(latent_rows(Z, self.spec_.model.n_latent), covariates, broadcast=True)
        if library_size is not None:
            if not self.spec_.is_count:
                raise ValueError(f"library_size applies to count likelihoods; this model's is {self.likelihood_!r}.")
            library_size = check_positive(library_size, "library_size")
        return self._run_batched(partial(self.module_.decode_inputs, library_size=library_size), source,
                                 self.n_features_in_, "Z", "The decoded data")

    def score_samples(self, X, n_importance_samples=1, covariates=None):
        """Per-sample lower bound on log p(x) in nats, in the original data scale.

        ``n_importance_samples=1``: the ELBO over ``_SCORE_DRAWS`` posterior samples (exact
        KL without flows); ``k > 1``: the importance-weighted bound (Burda et al., 2016),
        tighter as ``k`` grows, at ``k`` decoder passes per row. Fixed noise serves every
        row, so a score does not depend on the other rows. Never NaN; a row far outside the
        training data can score ``-inf``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), path or numpy.memmap
            As for :meth:`transform`.
        n_importance_samples : int, default=1
            ``k``; 1000 or more gives the test log-likelihoods reported in the literature.
        covariates : array-like, DataFrame or str, default=None
            As for :meth:`transform`.

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        """
        check_positive_int(n_importance_samples, "n_importance_samples")
        self._check_fitted()
        source = self._conditioned(input_rows(self, X), covariates, X)
        check = self._count_check(whole_numbers=True)
        k = _SCORE_DRAWS if n_importance_samples == 1 else n_importance_samples
        generator = _random.generator("score")
        draws = torch.randn(k, self.spec_.model.n_latent, generator=generator).to(self.device_)
        score = self.module_.mean_elbo if n_importance_samples == 1 else self.module_.importance_weighted_bound
        return run_batched(lambda batch: score(batch, draws)[:, None], source, 1, self.eval_batch_size, self.device_,
                           "X", check)[:, 0]

    def score(self, X, y=None, covariates=None):
        """Mean ELBO per sample in nats (higher is better), for model selection; ``y`` is ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X, covariates=covariates)))

    def sample(self, n_samples=1, random_state=None, covariates=None):
        """Generate data: draw latent codes from the prior N(0, I) and decode them; under
        a count likelihood, draw counts from the decoded distribution at the mean total of
        the training rows.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : int, RandomState instance or None, default=None
            Seeds the latent draws.
        covariates : array-like or DataFrame, default=None
            For a model fitted with covariates, those to generate under: one row per sample,
            or one for all.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features_in_), dtype float32
            The decoded codes; counts under a count likelihood.
        """
        self._check_fitted()
        check_positive_int(n_samples, "n_samples")
        seed = draw_seed(random_state)
        Z = torch.randn(n_samples, self.spec_.model.n_latent, generator=_random.generator("sample_codes", seed)).numpy()
        if not self.spec_.is_count:
            return self.inverse_transform(Z, covariates=covariates)
        likelihood = self.module_.likelihood
        source = self._conditioned(latent_rows(Z, self.spec_.model.n_latent), covariates, broadcast=True)
        params = self._run_batched(self.module_.decode_params, source, likelihood.n_params * self.n_features_in_, "Z",
                                   "The decoded data")
        with torch.no_grad():
            return likelihood.draw(torch.from_numpy(params).to(self.device_), None, _random.rng("sample_counts", seed))

    def encode_covariates(self, covariates, X=None):
        """``covariates`` as the model's input columns: what an exported encoder or decoder
        of a model fitted with covariates takes as its ``covariates`` input.

        Parameters
        ----------
        covariates : array-like, DataFrame or str
            As :meth:`fit` takes them (for obs column names, ``X`` is the AnnData).

        Returns
        -------
        encoded : ndarray of shape (n_samples, spec_.covariates.width), float32
            One indicator column per category of each categorical covariate, in the order of
            ``spec_.covariates``, and each continuous covariate standardized.
        """
        self._check_fitted()
        if self.spec_.covariates is None:
            raise ValueError("This model was fitted without covariates: it has none to encode.")
        table = covariate_table(covariates, X)
        if table is None:
            raise ValueError("covariates is None: give the covariates to encode.")
        return self.spec_.covariates.encode(table, len(table[0][1]))

    def predict_proba(self, X, covariates=None):
        """Class probabilities of ``X``'s rows (label transfer), as ``label_transfer`` says:
        by the model's classifier (fitted with ``y`` and ``classifier_weight`` above 0: the
        softmax of :meth:`cvae.nn.VAE.classify`), or by a vote of their ``k`` nearest
        labelled training rows in the embedding; ``"auto"``, the classifier where the model
        has one.

        For the vote, the model must have been fitted with ``y``: it keeps its labelled training rows
        with their classes (a sample of ``RESERVOIR_ROWS`` of them, fewer for wide rows,
        and none with ``store_rows=False``), embedded by the current weights. ``k`` is ``n_neighbors``, or
        fewer when labels are few: the square root of the labelled rows per class (at least
        1), so that a vote stays within a class's labelled rows. A row's probability of a
        class is ``(votes + alpha / n_classes) / (k + alpha)``, the vote smoothed towards
        uniform, so that no class is certain from a handful of neighbours; ``alpha`` (0.01 to
        3) is the one under which the labelled rows' own leave-one-out votes score best
        (:func:`cvae.neighbors.vote.vote_smoothing`): calibrated on the model's embedding. Measured in
        benchmarks/README.md, "Label transfer".

        Parameters
        ----------
        X : array-like, sparse matrix, path, numpy.memmap or anndata.AnnData
            As for :meth:`transform`.
        covariates : array-like, DataFrame or str, default=None
            As for :meth:`transform`.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            In the order of ``classes_``: float64 from the vote; from the classifier,
            float64 for float64 input and float32 otherwise, as :meth:`transform`.
        """
        if self._uses_classifier():
            return self._classified(X, covariates)
        votes, k = self._votes(X, covariates)
        alpha = vote_smoothing(*self._labelled, k, votes.shape[1], _random.rng("calibration"))
        return (votes + alpha / votes.shape[1]) / (k + alpha)

    def predict(self, X, covariates=None):
        """The class of each of ``X``'s rows: the most probable by :meth:`predict_proba`
        (ties: the first in ``classes_``).

        ``score`` stays the ELBO: in a model search, pass ``scoring="accuracy"``.

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        if self._uses_classifier():
            return self.classes_[self._classified(X, covariates).argmax(axis=1)]
        votes, _ = self._votes(X, covariates)  # first: it says why a model without labels cannot predict
        return self.classes_[votes.argmax(axis=1)]

    def _has_classifier(self):
        self._check_fitted()
        return self.module_.classifier is not None

    def _uses_classifier(self):
        """Whether :meth:`predict` reads the classifier (``label_transfer``), else the vote."""
        self._check_fitted()
        choice = self.label_transfer
        if choice not in LABEL_TRANSFERS:
            raise ValueError(f"label_transfer must be one of {', '.join(map(repr, LABEL_TRANSFERS))}, got {choice!r}.")
        if choice == "classifier" and not self._has_classifier():
            raise ValueError("label_transfer='classifier' needs the classifier trained with the model, which this "
                             "model lacks: fit with y and classifier_weight above 0, or set label_transfer='vote' "
                             "or 'auto'.")
        return choice == "classifier" or (choice == "auto" and self._has_classifier())

    def _classified(self, X, covariates):
        """The classifier's probabilities of ``X``'s rows."""
        source = self._conditioned(input_rows(self, X), covariates, X)

        def probabilities(rows):
            return torch.softmax(self.module_.classify(rows), dim=1)

        return self._run_batched(probabilities, source, self.spec_.model.n_classes, "X", "The class probabilities",
                                 self._count_check(whole_numbers=False))

    def _votes(self, X, covariates):
        """``(votes, k)``: each row's count of each class among its ``k`` nearest labelled
        training rows."""
        self._check_fitted()
        if not hasattr(self, "classes_"):
            raise ValueError("predict needs labels: fit with y (class labels of the training rows).")
        if self._labelled is None:
            raise ValueError("predict needs the labelled training rows, which this model did not keep: it was fitted "
                             "with store_rows=False, or by a version before predict. Fit it again with y.")
        reference, codes = self._labelled
        Z = self.transform(X, covariates)
        k = min(self.n_neighbors, len(codes), max(1, round(math.sqrt(len(codes) / len(self.classes_)))))
        queries = torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32))
        return class_votes(queries, reference, codes, k, len(self.classes_)), k

    def export(self, path, part="transform"):
        """Write what the fitted model computes to a file that runs without cvae.

        Parameters
        ----------
        path : str or path-like
            ``.onnx`` (ONNX, for onnxruntime and other runtimes; needs the ``export`` extra)
            or ``.pt2`` (a ``torch.export`` program, for ``torch.export.load``). Replaced
            atomically if it exists.
        part : {"transform", "encoder", "decoder"}, default="transform"
            ``"transform"``: raw rows in (float32, any number), what :meth:`transform`
            gives out under the current ``placement`` and ``n_neighbors``. With the
            neighbour placement the file holds the training rows as the placement searches
            them (at most 50 columns) and their embedding, so it grows by about
            ``4 * n_rows * (min(n_features, 50) + n_components)`` bytes, plus
            ``200 * n_features`` for the projection of wide rows and 0.8 MB for the grid
            of a 2-D embedding; its memory per call grows as batch rows times training rows
            (4 bytes each): serve it batches of at most a few thousand rows. After
            :meth:`partial_fit` it holds the updated reference. ``"encoder"``: the
            posterior means out, the normalization inside; what :meth:`transform` gives with
            ``placement="encoder"``: a few hundred kB to a few MB, and faster, but its
            neighbourhoods trail the placement's on unseen rows. ``"decoder"``: embeddings in, what
            :meth:`inverse_transform` gives out; under a count likelihood, also each row's
            library size, as a ``(n_rows, 1)`` input. A model fitted with covariates: the
            encoder and the decoder take them as a last input, ``covariates``, encoded by
            :meth:`encode_covariates`; the neighbour placement places rows by their data
            alone and takes the rows alone. Agreement and sizes: benchmarks/README.md,
            "What an export serves"; latency: "Serving".

        Returns
        -------
        path : pathlib.Path
        """
        self._check_fitted()
        placer = None
        if part == "transform":
            reference = self._placement_reference()
            placer = None if reference is None else reference.placer(self.n_neighbors)
        return export_module(self.module_, path, part, counts=self.spec_.is_count, placer=placer)


def run_batched(fn, source, n_out, batch_size, device, name, check=None):
    """Apply ``fn`` to float32 tensors of ``source``'s rows, ``batch_size`` rows at a time.

    Returns numpy, float64 for float64 input and float32 otherwise. Rows read from a file
    or memmap are checked here, a batch at a time, and every batch by ``check(rows, name)``
    when given (what the model needs of its input, e.g. counts).
    """
    dtype = np.float64 if source.dtype == np.float64 else np.float32
    out = np.empty((source.n_samples, n_out), dtype=dtype)
    with torch.inference_mode():
        for rows in iterate_chunks(source.n_samples, batch_size):
            batch = source.read(rows.start, rows.stop)
            if source.checked:  # NaN and infinity are already ruled out
                check_finite_float(batch, name)
            else:
                check_chunk(batch, name, rows, source.name)
            if check is not None:
                check(batch[:, : getattr(source, "n_data", batch.shape[1])], name)
            out[rows] = fn(_as_tensor(batch, device)).cpu().numpy()
    return out


def _as_tensor(array, device):
    """float32 tensor on ``device``; read-only arrays (e.g. memmaps) are copied, not shared."""
    array = np.asarray(array, dtype=np.float32)
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, dtype=np.float32, order="C")
    return torch.from_numpy(array).to(device)
