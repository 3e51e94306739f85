"""Torch building blocks of the variational autoencoder (no training logic)."""

from .flows import IAFStep, InverseAutoregressiveFlow
from .likelihoods import BernoulliLikelihood, GaussianLikelihood, make_likelihood
from .made import MADE, MaskedLinear
from .mlp import MLP, initialize_weights
from .vae import VAE, VAEOutput

__all__ = [
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "IAFStep",
    "InverseAutoregressiveFlow",
    "MADE",
    "MLP",
    "MaskedLinear",
    "VAE",
    "VAEOutput",
    "initialize_weights",
    "make_likelihood",
]
