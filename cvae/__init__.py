"""cvae: CompressionVAE on PyTorch, as a scikit-learn dimensionality-reduction estimator."""

__version__ = "0.2.0"

__all__ = ["CompressionVAE", "__version__"]


def __getattr__(name):
    # Imported on first use, so that the command line's --help and argument errors do not
    # wait for torch and scikit-learn to load.
    if name == "CompressionVAE":
        from .estimator import CompressionVAE

        return CompressionVAE
    raise AttributeError(f"module 'cvae' has no attribute {name!r}")
