from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled 8x8 digits, pixel values in [0, 16]."""
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


@pytest.fixture
def X(digits):
    """The first 400 rows of digits."""
    return digits[0][:400]


@pytest.fixture
def fast():
    """Parameters that make a fit take well under a second."""
    return dict(hidden_layer_sizes=(32, 16), batch_size=64, max_steps=60, validation_interval=20, random_state=0)


@pytest.fixture
def png_size():
    """Width and height of a PNG file, after checking it is one and is not empty."""

    def size(path):
        data = Path(path).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000, f"{path} is not a non-empty PNG"
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")

    return size


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt, as in a terminal, even where the suite was started
    with SIGINT ignored (a shell's background job), so ``_thread.interrupt_main`` works."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def rows():
    """103 rows of 5 standard normal features, float32."""
    return np.random.default_rng(0).normal(size=(103, 5)).astype(np.float32)


@pytest.fixture(scope="session")
def exported_transform(digits, tmp_path_factory):
    """A default model with IAF flows fitted on digits 0-4 and updated by ``partial_fit`` on
    5-9 (its transform: the neighbour placement by its sample of rows), its transform
    exported to ONNX, and the update's rows with their placement before the update; shared
    because an export of the placement takes about 10 s. The placement's graph holds no
    encoder, so this one export stands for plain models too."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from types import SimpleNamespace

    from cvae import CompressionVAE

    X, y = digits[0][:1200], digits[1][:1200]
    vae = CompressionVAE(hidden_layer_sizes=(32, 16), iaf_flow_length=2, max_steps=100, random_state=0).fit(X[y < 5])
    later = X[y >= 5]
    before = vae.transform(later[:257])
    vae.partial_fit(later)
    path = vae.export(tmp_path_factory.mktemp("export") / "transform.onnx")
    return SimpleNamespace(vae=vae, path=path, later=later, before=before)


@pytest.fixture
def npy(tmp_path, X):
    """The first 400 rows of digits as a .npy file."""
    np.save(tmp_path / "X.npy", X)
    return tmp_path / "X.npy"


@pytest.fixture
def run(tmp_path, X, fast):
    """A fitted run in a log directory: the estimator and the directory."""
    from cvae import CompressionVAE

    vae = CompressionVAE(**dict(fast, logdir=str(tmp_path / "run"))).fit(X)
    return vae, tmp_path / "run"
