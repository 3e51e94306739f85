import numpy as np
import pytest
from sklearn.datasets import load_digits


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled 8x8 digits, pixel values in [0, 16]."""
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


@pytest.fixture
def fast():
    """Parameters that make a fit take well under a second."""
    return dict(hidden_layer_sizes=(32, 16), batch_size=64, max_steps=60, validation_interval=20, random_state=0)
