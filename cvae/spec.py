"""The typed run specification: the one record of what a fitted model is.

A :class:`RunSpec` is made at the first fit from the estimator's parameters and the data,
stored in ``params.json`` and in pickles, and is the only thing that ``load``, unpickling
and warm starts rebuild a model from. :meth:`RunSpec.from_dict` validates what it reads, so
a damaged or hand-edited file gives an error that names the field.
"""

import math
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real

import numpy as np
import torch

from . import _random
from ._validation import draw_seed, is_positive_int
from .nn import VAE
from .nn.likelihoods import LIKELIHOODS, is_count_likelihood
from .nn.init import INITIALIZERS
from .nn.mlp import ACTIVATIONS
from .nn.vae import default_hidden_sizes, load_weights
from .data.covariates import CovariateSpec
from .data.preprocessing import NORMALIZATIONS

__all__ = ["FORMAT_VERSION", "ModelSpec", "RunSpec", "build_module", "check_warm_start", "new_spec"]

# The version of the saved format (params.json and checkpoint.pt); it changes whenever
# what is written changes, and cvae.training.logdir upgrades older versions when reading.
FORMAT_VERSION = 2


@dataclass(frozen=True)
class ModelSpec:
    """The architecture and likelihood of a VAE (the arguments of :class:`cvae.nn.VAE`)."""

    n_features: int
    n_latent: int
    hidden_sizes: tuple
    likelihood: str
    n_flows: int = 0
    dropout: float = 0.0
    activation: str = "relu"
    initializer: str = "orthogonal"
    n_covariates: int = 0
    n_classes: int = 0

    def __post_init__(self):
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        _check(self, "n_features", is_positive_int)
        _check(self, "n_latent", is_positive_int)
        _check(self, "hidden_sizes", lambda v: all(is_positive_int(s) for s in v))
        _check(self, "likelihood", lambda v: v in LIKELIHOODS)
        _check(self, "n_flows", lambda v: _int(v) and v >= 0)
        _check(self, "dropout", lambda v: _real(v) and 0 <= v < 1)
        _check(self, "activation", lambda v: v in ACTIVATIONS)
        _check(self, "initializer", lambda v: v in INITIALIZERS)
        _check(self, "n_covariates", lambda v: _int(v) and v >= 0)
        _check(self, "n_classes", lambda v: _int(v) and (v == 0 or v >= 2), "0, or at least 2 classes")

    def to_dict(self):
        out = dict(asdict(self), hidden_sizes=list(self.hidden_sizes))
        for name in ("n_covariates", "n_classes"):  # written only where they apply: other runs' files read as before
            if not out[name]:
                del out[name]
        return out


@dataclass(frozen=True, eq=False)
class RunSpec:
    """Everything needed to rebuild a fitted model besides its weights.

    Parameters
    ----------
    model : ModelSpec
    normalize : {"global", "feature", "none"}
        How ``loc`` and ``scale`` were computed.
    loc, scale : ndarray of shape (n_features,), float32
        Feature normalization applied inside the model (``scale > 0``).
    seed : int
        The run's seed: its split, initialization and batch order.
    feature_names : tuple of str or None
        Column names of the training data, when it had string column names.
    library_size : float or None
        Under a count likelihood, the mean total of the training rows, at which the model
        decodes by default; ``None`` otherwise.
    upper : float or None
        Under the Bernoulli likelihood of data in [0, upper] other than [0, 1] (8-bit pixel
        values: 255), the value it models as 1; ``None`` otherwise.
    covariates : cvae.data.covariates.CovariateSpec or None
        The covariates the model is conditioned on (``model.n_covariates`` encoded columns
        after the data's), or ``None``.
    format_version : int
        :data:`FORMAT_VERSION` of the code that wrote it.
    """

    model: ModelSpec
    normalize: str
    loc: np.ndarray
    scale: np.ndarray
    seed: int
    feature_names: tuple = None
    library_size: float = None
    upper: float = None
    covariates: CovariateSpec = None
    format_version: int = field(default=FORMAT_VERSION)

    def __post_init__(self):
        object.__setattr__(self, "loc", np.asarray(self.loc, dtype=np.float32))
        object.__setattr__(self, "scale", np.asarray(self.scale, dtype=np.float32))
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", tuple(str(n) for n in self.feature_names))
        n = self.model.n_features
        _check(self, "normalize", lambda v: v in NORMALIZATIONS)
        _check(self, "loc", lambda v: v.shape == (n,) and np.isfinite(v).all(), f"{n} finite numbers")
        _check(self, "scale", lambda v: v.shape == (n,) and np.isfinite(v).all() and (v > 0).all(),
               f"{n} finite positive numbers")
        _check(self, "seed", lambda v: _int(v) and v >= 0)
        _check(self, "feature_names", lambda v: v is None or len(v) == n, f"None or {n} names")
        _check(self, "library_size", lambda v: (v is None) != self.is_count and (v is None or _real(v) and v > 0),
               "a positive number under a count likelihood, else None")
        _check(self, "upper", lambda v: v is None or (self.model.likelihood == "bernoulli" and _real(v) and v > 0),
               "None, or a positive number under the Bernoulli likelihood")
        _check(self, "covariates", lambda v: (v.width if v is not None else 0) == self.model.n_covariates,
               f"covariates of {self.model.n_covariates} encoded columns (model.n_covariates)")
        _check(self, "format_version", lambda v: v == FORMAT_VERSION, f"{FORMAT_VERSION}")

    @property
    def n_features(self):
        return self.model.n_features

    @property
    def n_inputs(self):
        """Columns of the rows the model takes: the data's, then the encoded covariates'."""
        return self.model.n_features + self.model.n_covariates

    @property
    def is_count(self):
        """Whether the model's likelihood is a count likelihood (and ``library_size`` is set)."""
        return is_count_likelihood(self.model.likelihood)

    def to_dict(self):
        """A JSON-ready dict that :meth:`from_dict` reads back."""
        return {
            "format_version": self.format_version,
            "model": self.model.to_dict(),
            "normalize": self.normalize,
            "loc": self.loc.tolist(),
            "scale": self.scale.tolist(),
            "seed": int(self.seed),
            "feature_names": None if self.feature_names is None else list(self.feature_names),
            # written only where it applies, so that other runs' files read as before
            **({} if self.library_size is None else {"library_size": float(self.library_size)}),
            **({} if self.upper is None else {"upper": float(self.upper)}),
            **({} if self.covariates is None else {"covariates": self.covariates.to_dict()}),
        }

    @classmethod
    def from_dict(cls, data):
        """Rebuild and validate a spec written by :meth:`to_dict`.

        Raises
        ------
        ValueError
            Naming the missing, unknown or invalid field.
        """
        if not isinstance(data, dict):
            raise ValueError(f"the run specification must be a JSON object, got {type(data).__name__}")
        model = data.get("model")
        if not isinstance(model, dict):
            raise ValueError("the run specification has no 'model' object")
        for fields, given, where in ((_MODEL_FIELDS, model, "model."), (_RUN_FIELDS, data, "")):
            optional = {"format_version", "library_size", "upper", "covariates", "n_covariates", "n_classes"}
            missing = sorted(fields - optional - given.keys())
            unknown = sorted(given.keys() - fields)
            if missing or unknown:
                raise ValueError(
                    f"the run specification {'lacks ' + ', '.join(where + m for m in missing) if missing else ''}"
                    f"{' and ' if missing and unknown else ''}"
                    f"{'has unknown fields ' + ', '.join(where + u for u in unknown) if unknown else ''}"
                )
        if not isinstance(model["hidden_sizes"], list):
            raise ValueError(f"model.hidden_sizes must be a list of positive integers, got {model['hidden_sizes']!r}")
        for name in ("loc", "scale"):
            if not isinstance(data[name], list) or not all(_real(v) for v in data[name]):
                raise ValueError(f"{name} must be a list of numbers")
        covariates = data.get("covariates")
        covariates = None if covariates is None else CovariateSpec.from_dict(covariates)
        return cls(**dict(data, model=ModelSpec(**model), covariates=covariates))

    def __eq__(self, other):
        if not isinstance(other, RunSpec):
            return NotImplemented
        return self.to_dict() == other.to_dict()


# Estimator parameters that say what the model is, and the ModelSpec fields they set.
ARCHITECTURE = {
    "n_components": "n_latent",
    "hidden_layer_sizes": "hidden_sizes",
    "iaf_flow_length": "n_flows",
    "likelihood": "likelihood",
    "activation": "activation",
    "dropout": "dropout",
    "initializer": "initializer",
}
_MODEL_FIELDS = set(ModelSpec.__dataclass_fields__)
_RUN_FIELDS = set(RunSpec.__dataclass_fields__)


def new_spec(params, data, seed, feature_names=None):
    """The spec of a new run from the estimator's parameters and its
    :class:`cvae.data.preparation.FitData` (features, statistics, resolved likelihood, covariates)."""
    n_features, likelihood = data.n_features, data.likelihood
    width = 0 if data.covariates is None else data.covariates.width
    sizes = params["hidden_layer_sizes"]
    if sizes is None:
        sizes = default_hidden_sizes(n_features, int(params["n_components"]), neighbors=params["neighbor_weight"] > 0)
    else:
        sizes = [int(s) for s in sizes]
    # int(): NumPy integers (np.arange grids) would not be plain JSON numbers
    n_classes = 0
    if params["classifier_weight"] > 0:
        if data.classes is None:
            raise ValueError(f"classifier_weight={params['classifier_weight']!r} trains a classifier of the classes "
                             "of y with the model: fit with y (class labels), or set classifier_weight=0.")
        n_classes = len(data.classes)
        if n_classes < 2:
            raise ValueError(f"classifier_weight={params['classifier_weight']!r} trains a classifier, which needs at "
                             f"least two classes in y; it has {n_classes}.")
    model = ModelSpec(n_features, int(params["n_components"]), sizes, likelihood, int(params["iaf_flow_length"]),
                      float(params["dropout"]), params["activation"], params["initializer"], width, n_classes)
    counts = is_count_likelihood(likelihood)
    loc, scale = data.summary.normalization(params["normalize"], log=counts)
    library_size = data.summary.mean_total if counts else None
    upper = data.upper if likelihood == "bernoulli" and data.upper != 1.0 else None
    return RunSpec(model, params["normalize"], loc, scale, seed, feature_names, library_size, upper, data.covariates)


def check_warm_start(params, spec):
    """Refuse to continue the run ``spec`` describes with other parameters that define the
    model: its architecture, its normalization and its seed (``random_state`` as an int).

    ``None`` and ``"auto"`` stand for whatever the run has; so does a ``RandomState``.
    """
    if params["normalize"] != spec.normalize:
        _refuse_warm_start("normalize", spec.normalize, params["normalize"])
    random_state = params["random_state"]
    if isinstance(random_state, Integral) and draw_seed(random_state) != spec.seed:
        raise ValueError(
            f"warm_start=True continues the saved model, whose seed came from another random_state than "
            f"random_state={random_state!r}. Set random_state=None to continue it, or fit a new model "
            "(warm_start=False, and a new logdir)."
        )
    model = spec.model.to_dict()
    for param, name in ARCHITECTURE.items():
        value, saved = params[param], model[name]
        if value is None or value == "auto":
            continue
        if param == "hidden_layer_sizes":
            value = [int(s) for s in value]
        if value != saved:
            _refuse_warm_start(param, saved, value)
    weight = params.get("classifier_weight", 0.0)
    if (weight > 0) != (spec.model.n_classes > 0):
        has = "a classifier" if spec.model.n_classes else "no classifier (its predict votes)"
        raise ValueError(
            f"warm_start=True continues the saved model, which has {has}, but classifier_weight={weight!r} was "
            f"given. Set classifier_weight {'above 0' if spec.model.n_classes else 'to 0'} to continue it, or fit "
            "a new model (warm_start=False, and a new logdir)."
        )


def _refuse_warm_start(param, saved, value):
    raise ValueError(
        f"warm_start=True continues the saved model, whose {param} is {saved!r}, but {param}={value!r} "
        f"was given. Set {param}={saved!r} to continue it, or fit a new model (warm_start=False, and "
        "a new logdir)."
    )


def build_module(spec, state_dict=None):
    """The :class:`cvae.nn.VAE` that ``spec`` describes, with ``state_dict``'s weights if given,
    else with initial weights drawn from a generator seeded by ``spec.seed``."""
    loc, scale = torch.from_numpy(spec.loc.copy()), torch.from_numpy(spec.scale.copy())
    generator = _random.generator("init", spec.seed)
    module = VAE(loc=loc, scale=scale, library_size=spec.library_size, generator=generator, upper=spec.upper,
                 **asdict(spec.model))
    if state_dict is not None:
        load_weights(module, state_dict)
    return module


def _int(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _real(value):
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _check(obj, name, valid, expected=None):
    value = getattr(obj, name)
    try:
        ok = valid(value)
    except TypeError:
        ok = False
    if not ok:
        shown = value if not isinstance(value, np.ndarray) else f"an array of shape {value.shape}"
        hint = f" (expected {expected})" if expected else ""
        raise ValueError(f"invalid {type(obj).__name__} field {name}={shown!r}{hint}")
