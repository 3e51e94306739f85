"""export(): the transform (the neighbour placement included), the encoder and the decoder as
ONNX and torch.export files that match transform and inverse_transform, with a dynamic batch
size."""

import warnings

import numpy as np
import pytest
import torch

from cvae import CompressionVAE
from cvae.datasets import make_counts

FAST = dict(hidden_layer_sizes=(32, 16), max_steps=60, random_state=0)


def run_pt2(path, *inputs):
    program = torch.export.load(str(path))
    with torch.no_grad():
        return program.module()(*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in inputs)).numpy()


def run_onnx(path, *inputs):
    onnxruntime = pytest.importorskip("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in zip(names, inputs)})[0]


RUNNERS = {".pt2": run_pt2, ".onnx": run_onnx}


@pytest.fixture(scope="module")
def fitted(digits_module):
    X = digits_module
    return {
        "plain": CompressionVAE(neighbor_weight=0, **FAST).fit(X),
        "iaf": CompressionVAE(iaf_flow_length=2, placement="encoder", **FAST).fit(X),
    }


@pytest.fixture(scope="module")
def digits_module():
    from sklearn.datasets import load_digits

    return (load_digits().data / 16).astype(np.float32)


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
@pytest.mark.parametrize("model", ["plain", "iaf"])
def test_exported_encoder_and_decoder_match_transform_and_inverse_transform(fitted, digits_module, tmp_path,
                                                                            suffix, model):
    if suffix == ".onnx":
        pytest.importorskip("onnxscript")
    vae = fitted[model]
    run = RUNNERS[suffix]
    encoder = vae.export(tmp_path / f"encoder{suffix}", part="encoder")
    decoder = vae.export(tmp_path / f"decoder{suffix}", part="decoder")
    for rows in (digits_module[:1], digits_module[:257]):  # batch sizes other than the traced one
        Z = vae.transform(rows)
        np.testing.assert_allclose(run(encoder, rows), Z, atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(run(decoder, Z), vae.inverse_transform(Z), atol=1e-5, rtol=1e-5)
    assert run(encoder, digits_module[:0]).shape == (0, 2)  # an empty batch, through the flow too


def test_count_decoder_takes_the_library_size(tmp_path):
    X, _, _ = make_counts(300, 40, random_state=0)
    X = np.asarray(X.todense() if hasattr(X, "todense") else X, dtype=np.float32)
    vae = CompressionVAE(likelihood="poisson", neighbor_weight=0, **FAST).fit(X)
    path = vae.export(tmp_path / "decoder.pt2", part="decoder")
    Z = vae.transform(X[:5])
    sizes = np.array([[100.0], [250.0], [1000.0], [1.0], [5000.0]], dtype=np.float32)
    expected = np.vstack([vae.inverse_transform(Z[i : i + 1], library_size=float(size))
                          for i, size in enumerate(sizes[:, 0])])
    np.testing.assert_allclose(run_pt2(path, Z, sizes), expected, rtol=1e-5, atol=1e-4)
    encoder = vae.export(tmp_path / "encoder.pt2")  # without a placement, the transform is the encoder's map
    np.testing.assert_allclose(run_pt2(encoder, X[:5]), Z, atol=1e-5, rtol=1e-5)


def spread(Z):
    return float(np.linalg.norm(Z.std(axis=0)))


def unseen_rows(X, n, seed=0):
    """``n`` rows near ``X``'s but none of them: training rows with noise, clipped to its range."""
    rng = np.random.default_rng(seed)
    rows = X[rng.integers(0, len(X), n)] + rng.normal(0, 1, (n, X.shape[1]))
    return np.clip(rows, X.min(), X.max()).astype(np.float32)


def test_the_exported_transform_is_the_neighbour_placement_at_any_batch_size(exported_transform, digits):
    vae, path = exported_transform.vae, exported_transform.path
    X = digits[0]
    rows = np.vstack([X[1200:], unseen_rows(X, 5000 - len(X[1200:]))])  # test rows, then noisy ones
    placed = vae.transform(rows)
    encoder_map = vae.set_params(placement="encoder").transform(rows[:257])
    vae.set_params(placement="auto")
    tolerance = 1e-3 * spread(placed)
    for n in (1, 0, 257, 5000):
        got = run_onnx(path, rows[:n])
        assert got.shape == (n, 2)
        np.testing.assert_allclose(got, placed[:n], rtol=0, atol=tolerance)
    assert np.abs(run_onnx(path, rows[:257]) - encoder_map).max() > 100 * tolerance  # not the encoder's map
    kept = vae._checkpoint["reservoir"]["rows"].numpy()[:50]  # the rows it places by keep their place
    np.testing.assert_array_equal(run_onnx(path, kept), vae.embedding_[:50])


def test_an_export_after_partial_fit_carries_the_updated_reference(exported_transform):
    vae, path, later = exported_transform.vae, exported_transform.path, exported_transform.later[:257]
    after = vae.transform(later)
    assert np.abs(after - exported_transform.before).max() > 0.1 * spread(after)  # the update moved the placement
    assert vae.spec_.model.n_flows == 2 and len(vae.embedding_) > len(later)  # IAF, and every call's rows kept
    np.testing.assert_allclose(run_onnx(path, later), after, rtol=0, atol=1e-3 * spread(after))


def test_a_placement_in_torch_export_matches_transform(exported_transform, digits, tmp_path):
    vae = exported_transform.vae
    rows = unseen_rows(digits[0], 300, seed=1)
    path = vae.export(tmp_path / "transform.pt2")
    placed = vae.transform(rows)
    np.testing.assert_allclose(run_pt2(path, rows), placed, rtol=0, atol=1e-3 * spread(placed))


@pytest.mark.parametrize("path, part, message", [
    ("model.zip", "encoder", r"the suffix must be one of \.onnx, \.pt2"),
    ("model.pt2", "both", "part must be one of 'transform', 'encoder', 'decoder'"),
])
def test_export_refuses_unknown_formats_and_parts(fitted, tmp_path, path, part, message):
    with pytest.raises(ValueError, match=message):
        fitted["plain"].export(tmp_path / path, part=part)


def test_export_needs_a_fitted_model(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CompressionVAE().export(tmp_path / "encoder.pt2")


def test_cli_export_parts_are_the_exporters():
    from cvae.cli import build_parser
    from cvae.export import PARTS

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    part = next(a for a in commands.choices["export"]._actions if a.dest == "part")
    assert tuple(part.choices) == PARTS and part.default == "transform"


def test_cli_export(fitted, tmp_path, capsys):
    from cvae.cli import main

    X = np.random.default_rng(0).random((40, 64), dtype=np.float32)
    vae = CompressionVAE(logdir=tmp_path / "run", neighbor_weight=0, **FAST).fit(X)
    assert main(["export", str(tmp_path / "run"), str(tmp_path / "e.pt2"), "--part", "encoder"]) == 0
    assert "wrote the encoder of" in capsys.readouterr().out
    np.testing.assert_allclose(run_pt2(tmp_path / "e.pt2", X), vae.transform(X), atol=1e-5, rtol=1e-5)


def test_a_model_with_covariates_exports_them_as_a_last_input(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from cvae.datasets import make_batched_counts

    X, _, batch, _ = make_batched_counts(300, 40, n_batches=2, random_state=0)
    X = X.toarray()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = CompressionVAE(likelihood="negative_binomial", max_steps=30, random_state=0).fit(X, covariates=batch)
    encoded = vae.encode_covariates(batch[:7])
    assert encoded.shape == (7, 2) and np.array_equal(encoded.argmax(axis=1), batch[:7])
    encoder = ort.InferenceSession(str(vae.export(tmp_path / "encoder.onnx", part="encoder")))
    assert [i.name for i in encoder.get_inputs()] == ["x", "covariates"]
    rows = X[:7].astype(np.float32)
    Z = vae.set_params(placement="encoder").transform(rows, covariates=batch[:7])
    np.testing.assert_allclose(encoder.run(None, {"x": rows, "covariates": encoded})[0], Z, atol=1e-5)
    library = np.full((7, 1), vae.spec_.library_size, np.float32)
    decoded = run_pt2(vae.export(tmp_path / "decoder.pt2", part="decoder"), Z, library, encoded)
    np.testing.assert_allclose(decoded, vae.inverse_transform(Z, covariates=batch[:7]), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="fitted without covariates"):
        CompressionVAE(max_steps=5).fit(X[:50]).encode_covariates(batch[:50])
