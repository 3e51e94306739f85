"""Torch building blocks of the variational autoencoder (no training logic)."""

from .flows import InverseAutoregressiveFlow
from .likelihoods import BernoulliLikelihood, GaussianLikelihood, make_likelihood
from .init import initialize_weights
from .made import StackedMaskedLinear, autoregressive_masks
from .mlp import MLP
from .vae import VAE, VAEOutput

__all__ = [
    "BernoulliLikelihood",
    "GaussianLikelihood",
    "InverseAutoregressiveFlow",
    "MLP",
    "StackedMaskedLinear",
    "VAE",
    "VAEOutput",
    "autoregressive_masks",
    "initialize_weights",
    "make_likelihood",
]
