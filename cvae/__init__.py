"""cvae: CompressionVAE on PyTorch, as a scikit-learn dimensionality-reduction estimator."""

__version__ = "0.1.0"

from .estimator import CompressionVAE  # noqa: E402

__all__ = ["CompressionVAE", "__version__"]
