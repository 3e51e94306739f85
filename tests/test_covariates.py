"""Covariates: encoding and its checks (cvae/data/covariates.py), and a model conditioned on them:
round trips, refusals, counterfactual decoding, new batches."""

import json
import pickle
import warnings

import numpy as np
import pytest
import torch

from cvae import CompressionVAE
from cvae.data.covariates import CovariateSource, CovariateSpec, covariate_table
from cvae.data.sources import ArraySource
from cvae.datasets import make_batched_counts

pd = pytest.importorskip("pandas")


# ---------------------------------------------------------------- encoding


def test_a_table_of_each_kind_encodes_and_decodes_back():
    frame = pd.DataFrame({
        "batch": pd.Categorical(["b", "a", "b", "c"]),
        "donor": [3, 1, 3, 2],
        "treated": [True, False, False, True],
        "dose": [0.5, 1.5, 2.5, 3.5],
    })
    table = covariate_table(frame)
    spec = CovariateSpec.fit(table)
    assert [(c.name, c.kind) for c in spec.columns] == [
        ("batch", "categorical"), ("donor", "categorical"), ("treated", "categorical"), ("dose", "continuous")]
    assert spec.columns[0].categories == ("a", "b", "c") and spec.columns[1].categories == ("1", "2", "3")
    assert spec.width == 3 + 3 + 2 + 1
    encoded = spec.encode(table, 4)
    np.testing.assert_array_equal(encoded[:, :3], [[0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    dose = encoded[:, -1]
    assert dose.mean() == pytest.approx(0, abs=1e-6) and dose.std() == pytest.approx(1, abs=1e-6)
    decoded = spec.decode(encoded)
    assert list(decoded[0][1]) == ["b", "a", "b", "c"] and list(decoded[2][1]) == ["True", "False", "False", "True"]
    np.testing.assert_allclose(decoded[3][1], frame["dose"], rtol=1e-6)
    assert np.array_equal(spec.encode(decoded, 4), encoded)  # what replay re-encodes
    # the batches a graph is balanced over: each combination of categories once
    assert len(np.unique(spec.groups(encoded))) == 4


def test_one_dimensional_two_dimensional_and_named_forms():
    assert covariate_table([1, 2, 1])[0][0] == "covariate"
    two = covariate_table(np.array([[0, 1.5], [1, 2.5]]))
    assert [name for name, _ in two] == ["covariate_0", "covariate_1"]
    assert covariate_table(None) is None
    with pytest.raises(ValueError, match="1-D"):
        covariate_table(np.zeros((2, 2, 2)))


def test_an_unseen_category_a_missing_value_and_other_names_are_refused():
    spec = CovariateSpec.fit(covariate_table(np.array(["x", "y", "x"])))
    with pytest.raises(ValueError, match=r"categories the model was not fitted with: 'z'.*partial_fit"):
        spec.encode(covariate_table(np.array(["x", "z"])), 2)
    with pytest.raises(ValueError, match="missing value at row 1"):
        spec.encode(covariate_table(np.array(["x", None], dtype=object)), 2)
    with pytest.raises(ValueError, match=r"names \['batch'\].*\['covariate'\]"):
        spec.encode(covariate_table(pd.DataFrame({"batch": ["x", "y"]})), 2)
    with pytest.raises(ValueError, match="has 2 values, but X has 3 rows"):
        spec.encode(covariate_table(np.array(["x", "y"])), 3)
    continuous = CovariateSpec.fit(covariate_table(np.array([0.5, 1.0])))
    with pytest.raises(ValueError, match="non-finite value at row 0"):
        continuous.encode(covariate_table(np.array([np.nan, 1.0])), 2)


def test_new_categories_extend_their_covariate_at_its_end():
    frame = pd.DataFrame({"batch": ["a", "b"], "dose": [1.0, 2.0], "site": ["s", "t"]})
    spec = CovariateSpec.fit(covariate_table(frame))
    wider, inserted = spec.extended(covariate_table(pd.DataFrame({"batch": ["c", "a"], "dose": [3.0, 1.0],
                                                                 "site": ["u", "s"]})))
    assert wider.columns[0].categories == ("a", "b", "c") and wider.columns[2].categories == ("s", "t", "u")
    assert inserted == [(0, 2), (3, 5)]  # before the end of each covariate's columns
    assert spec.extended(covariate_table(frame)) == (spec, [])


def test_a_saved_spec_reads_back_and_a_damaged_one_is_named():
    spec = CovariateSpec.fit(covariate_table(pd.DataFrame({"batch": ["a", "b"], "dose": [1.0, 3.0]})))
    assert CovariateSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    for damaged, message in [
        ([], "non-empty list"),
        ([{"name": "batch", "kind": "categorical", "categories": ["a", "a"]}], "distinct categories"),
        ([{"name": "dose", "kind": "continuous", "mean": 0.0, "scale": 0.0}], "positive scale"),
        ([{"name": "x", "kind": "ordinal"}], "kind 'ordinal'"),
        ([{"name": "x", "kind": "continuous", "mean": 0.0, "scale": 1.0}] * 2, "share a name"),
    ]:
        with pytest.raises(ValueError, match=message):
            CovariateSpec.from_dict(damaged)


def test_a_covariate_source_puts_the_encoded_columns_after_the_rows():
    rows = np.arange(12, dtype=np.float32).reshape(4, 3)
    encoded = np.eye(4, 2, dtype=np.float32)
    source = CovariateSource(ArraySource(rows), encoded)
    assert source.n_features == 5 and source.n_data == 3
    np.testing.assert_array_equal(source.read(1, 3), np.hstack([rows, encoded])[1:3])
    np.testing.assert_array_equal(source.take(np.array([0, 3])), np.hstack([rows, encoded])[[0, 3]])


# ---------------------------------------------------------------- a conditioned model


@pytest.fixture(scope="module")
def batched():
    return make_batched_counts(1200, 100, n_batches=3, batch_effect=0.5, random_state=0, return_effects=True)


@pytest.fixture(scope="module")
def conditioned(batched):
    X, _, batch, _, _ = batched
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CompressionVAE(likelihood="negative_binomial", max_steps=400, random_state=0).fit(X, covariates=batch)


def test_counterfactual_decoding_recovers_the_batch_factor(batched, conditioned):
    X, _, batch, _, effects = batched
    Z = conditioned.transform(X, covariates=batch)
    as_0, as_1 = (conditioned.inverse_transform(Z, covariates=[b]) for b in (0, 1))
    expressed = np.asarray(X.sum(axis=0)).ravel() > 0
    ratio = np.log(as_1[:, expressed]) - np.log(as_0[:, expressed])
    ratio = np.median(ratio - ratio.mean(axis=1, keepdims=True), axis=0)  # a cell's scale is free
    truth = np.log(effects["factors"][1, expressed] / effects["factors"][0, expressed])
    truth -= truth.mean()
    assert np.corrcoef(ratio, truth)[0, 1] > 0.8  # 0.88 measured; no relation would give about 0
    assert 0.6 < np.polyfit(truth, ratio, 1)[0] < 1.3


def test_a_fit_with_covariates_reconstructs_a_quarter_of_each_batch_unless_told(batched, conditioned):
    X, types, batch, _, _ = batched
    assert conditioned.reconstruction_fraction == "auto" and conditioned.reconstruction_fraction_ == 0.25
    fits = {
        "no covariates": ({}, None, 1.0),
        "no neighbour term": ({"neighbor_weight": 0.0}, batch, 1.0),
        "a classifier": ({"classifier_weight": 1.0}, batch, 1.0),
        "a number": ({"reconstruction_fraction": 0.5}, batch, 0.5),
    }
    for name, (params, covariates, fraction) in fits.items():
        vae = CompressionVAE(likelihood="negative_binomial", max_steps=2, random_state=0, **params)
        y = types[:300] if "classifier_weight" in params else None  # the classifier's labels
        assert vae.fit(X[:300], y, covariates=None if covariates is None else covariates[:300]) \
            .reconstruction_fraction_ == fraction, name
    # an update of a model with covariates resolves "auto" as its fit did
    assert conditioned.__sklearn_clone__().set_params(max_steps=2).fit(X[:300], covariates=batch[:300]).partial_fit(
        X[300:400], covariates=batch[300:400]).reconstruction_fraction_ == 0.25


def test_a_conditioned_model_round_trips_through_pickle_and_its_log_directory(batched, tmp_path):
    X, _, batch, _, _ = batched
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = CompressionVAE(likelihood="negative_binomial", max_steps=30, random_state=0, logdir=tmp_path / "run")
        Z = vae.fit_transform(X[:300], covariates=batch[:300])
    for copy in (pickle.loads(pickle.dumps(vae)), CompressionVAE.load(tmp_path / "run")):
        assert copy.spec_.covariates == vae.spec_.covariates
        np.testing.assert_array_equal(copy.transform(X[:300], covariates=batch[:300]), Z)
    document = json.loads((tmp_path / "run" / "params.json").read_text())
    document["spec"]["covariates"][0]["categories"] = ["0", "0", "1"]
    (tmp_path / "run" / "params.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"params.json.*distinct categories"):
        CompressionVAE.load(tmp_path / "run")


def test_every_method_takes_covariates_and_refuses_what_does_not_fit(batched, conditioned):
    X, _, batch, _, _ = batched
    rows = X[:5]
    Z = conditioned.transform(rows, covariates=batch[:5])
    assert conditioned.inverse_transform(Z, covariates=batch[:5]).shape == (5, 100)
    assert conditioned.sample(4, covariates=[2], random_state=0).shape == (4, 100)
    assert np.isfinite(conditioned.score_samples(rows, covariates=batch[:5])).all()
    calls = {
        "transform": lambda c: conditioned.transform(rows, covariates=c),
        "score_samples": lambda c: conditioned.score_samples(rows, covariates=c),
        "inverse_transform": lambda c: conditioned.inverse_transform(Z, covariates=c),
        "sample": lambda c: conditioned.sample(5, covariates=c),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=r"conditioned on the covariates \['covariate'\]"):
            call(None)
        with pytest.raises(ValueError, match="categories the model was not fitted with: '7'"):
            call([7] * 5)
    plain = CompressionVAE(max_steps=5, random_state=0).fit(np.random.default_rng(0).random((40, 4)))
    with pytest.raises(ValueError, match="fitted without covariates"):
        plain.transform(np.zeros((2, 4)), covariates=[0, 1])
    with pytest.raises(ValueError, match="X_valid cannot be given with covariates"):
        CompressionVAE(max_steps=5).fit(X[:50], X_valid=X[50:60], covariates=batch[:50])


def test_anndata_obs_columns_name_the_covariates(batched):
    anndata = pytest.importorskip("anndata")
    X, _, batch, _, _ = batched
    obs = pd.DataFrame({"batch": batch[:200].astype(str), "dose": np.linspace(0, 1, 200)})
    adata = anndata.AnnData(X=X[:200], obs=obs.set_index(pd.Index([str(i) for i in range(200)])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = CompressionVAE(likelihood="negative_binomial", max_steps=10, random_state=0)
        Z = vae.fit_transform(adata, covariates="batch, dose")
    assert vae.spec_.covariates.names == ("batch", "dose")
    np.testing.assert_array_equal(vae.transform(adata, covariates=["batch", "dose"]), Z)
    with pytest.raises(ValueError, match="names no column 'donor' of the AnnData's obs"):
        vae.transform(adata, covariates="donor")


@pytest.fixture(scope="module")
def reference_fit():
    """Counts of three batches, and a model fitted on the first two (neither
    ``freeze_reference`` nor ``landmark_weight`` changes a fit) with their embedding."""
    X, labels, batch, _ = make_batched_counts(1500, 100, n_batches=3, composition=0, random_state=1)
    reference = batch < 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = CompressionVAE(likelihood="negative_binomial", max_steps=200, random_state=0)
        before = vae.fit_transform(X[reference], covariates=batch[reference])
    return X, labels, batch, pickle.dumps(vae), before


@pytest.mark.parametrize("freeze_reference, landmark_weight", [(True, 1.0), (False, 1.0), (False, 0.0)])
def test_partial_fit_adds_a_new_batch_and_maps_it_beside_the_reference(
        reference_fit, freeze_reference, landmark_weight):
    from sklearn.neighbors import KNeighborsClassifier

    X, labels, batch, fitted, before = reference_fit
    reference, query = batch < 2, batch == 2
    vae = pickle.loads(fitted).set_params(freeze_reference=freeze_reference, landmark_weight=landmark_weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(vae.transform(X[reference], covariates=batch[reference]), before)
        weights = {k: v.clone() for k, v in vae.module_.state_dict().items()}
        vae.placement = "encoder"
        before_encoder = vae.transform(X[reference], covariates=batch[reference])
        vae.placement = "auto"
        vae.set_params(max_steps=120).partial_fit(X[query], covariates=batch[query])  # the new batch's budget
    assert vae.spec_.covariates.columns[0].categories == ("0", "1", "2")
    after = vae.transform(X[reference], covariates=batch[reference])
    moved = np.linalg.norm(after - before, axis=1) / np.sqrt(before.var(axis=0).sum())
    vae.placement = "encoder"
    encoder_map = vae.transform(X[reference], covariates=batch[reference])
    vae.placement = "auto"
    changed = [k for k, v in vae.module_.state_dict().items() if v.shape != weights[k].shape
               or not torch.equal(v, weights[k])]
    if freeze_reference or landmark_weight == 0:  # without landmarks nothing would hold the reference
        # only the new batch's columns trained: the encoder embeds the reference exactly as before, and the
        # default transform moves only the rows it places among stored rows, which now include the query's
        assert np.median(moved) == 0 and np.mean(moved > 0) < 0.2
        np.testing.assert_array_equal(encoder_map, before_encoder)
        assert changed == ["encoder.0.weight", "decoder.0.0.weight"]
        for name in changed:  # one column more, the new batch's; the others as they were
            new = vae.module_.state_dict()[name]
            assert new.shape[1] == weights[name].shape[1] + 1 and torch.equal(new[:, :-1], weights[name])
    else:
        # every weight trained, the landmarks holding the reference: it moved, but little
        assert len(changed) > 2 and 0 < np.median(moved) < 0.1
        assert vae.module_.state_dict()["encoder.0.weight"].shape[1] == weights["encoder.0.weight"].shape[1] + 1
    mapped = vae.transform(X[query], covariates=batch[query])
    accuracy = KNeighborsClassifier(10).fit(before, labels[reference]).score(mapped, labels[query])
    assert accuracy > 0.85  # 8 types: chance 0.125
