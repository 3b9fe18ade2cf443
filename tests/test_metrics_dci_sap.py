"""Oracle tests of DCI, SAP, modularity and explicitness, and of DCI's fast classifier.

FactorCodes tables are built from arrays on small synthetic grids, so the right answer is known:
codes equal to the factors score ~1, constant or random codes ~0 (or chance), and permuting the
latents changes nothing. SAP's LinearSVC, explicitness' LogisticRegression and roc_auc_score are
scikit-learn's own; the fast gradient-boosted trees are checked against GradientBoostingClassifier
(and DCI against its reference backend), DCI's entropies against scipy.
"""

from __future__ import annotations

import numpy as np
import pytest

from vision_models.metrics.codes import FactorCodes
from vision_models.metrics.dci import _completeness, _dci, _disentanglement, compute_dci
from vision_models.metrics.gradient_boosting import GradientBoostingClassifier, make_gradient_boosting
from vision_models.metrics.modularity_explicitness import _modularity, compute_modularity_explicitness
from vision_models.metrics.sap import _sap, compute_sap

SIZES = (2, 3, 4, 5)
NAMES = ("colour", "shape", "size", "position")
GRID = np.stack(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES), axis=1)  # (120, 4), flat-index order
SAMPLES = {"num_train": 1000, "num_test": 500}


def make_codes(mean: np.ndarray) -> FactorCodes:
    return FactorCodes(NAMES, SIZES, np.asarray(mean, np.float32))


def identity_codes() -> FactorCodes:
    return make_codes(GRID)


def constant_codes() -> FactorCodes:
    return make_codes(np.full((len(GRID), 4), 0.3))


def noise_codes(seed: int = 0) -> FactorCodes:
    return make_codes(np.random.default_rng(seed).normal(size=(len(GRID), 4)))


def permuted(codes: FactorCodes, order=(2, 0, 3, 1)) -> FactorCodes:
    return make_codes(codes.mean[:, list(order)])


def classification_data(num_samples: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (n, 5): 0 and 1 informative (1 less so), 2-4 noise; labels (n,) with unequal class sizes."""
    rng = np.random.default_rng(seed)
    labels = np.minimum(rng.geometric(0.35, num_samples) - 1, num_classes - 1)
    features = rng.normal(size=(num_samples, 5))
    features[:, 0] += 1.5 * labels
    features[:, 1] += 0.5 * labels
    return features.astype(np.float32), labels


# ------------------------------------------------------------------------ gradient-boosted trees
@pytest.mark.parametrize("num_classes", [2, 4])
def test_gradient_boosting_agrees_with_sklearn(num_classes):
    sklearn_ensemble = pytest.importorskip("sklearn.ensemble")
    x, y = classification_data(1500, num_classes, seed=num_classes)
    x_test, y_test = classification_data(1500, num_classes, seed=10 + num_classes)
    ours = GradientBoostingClassifier().fit(x, y)
    reference = sklearn_ensemble.GradientBoostingClassifier(random_state=0).fit(x, y)
    for inputs, labels in ((x, y), (x_test, y_test)):
        assert abs(np.mean(ours.predict(inputs) == labels) - np.mean(reference.predict(inputs) == labels)) < 0.03
    assert list(np.argsort(-ours.feature_importances_)[:2]) == [0, 1]
    assert list(np.argsort(-reference.feature_importances_)[:2]) == [0, 1]
    np.testing.assert_allclose(ours.feature_importances_, reference.feature_importances_, atol=0.04)
    assert ours.feature_importances_.sum() == pytest.approx(1.0)


def test_gradient_boosting_with_few_distinct_values_is_sklearns_model():
    """While every feature has at most max_bins values the bins are exact: the same trees as scikit-learn."""
    sklearn_ensemble = pytest.importorskip("sklearn.ensemble")
    x, y = classification_data(600, 3, seed=0)
    x = np.round(x * 4) / 4  # ~40 distinct values per feature
    ours = GradientBoostingClassifier(n_estimators=20).fit(x, y)
    reference = sklearn_ensemble.GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    np.testing.assert_allclose(ours.feature_importances_, reference.feature_importances_, atol=0.01)
    np.testing.assert_allclose(ours.decision_function(x), reference.decision_function(x), atol=1e-3)


def test_gradient_boosting_without_signal_predicts_the_majority_class():
    y = np.array(["b", "a", "b", "c", "b", "b"] * 20)
    model = GradientBoostingClassifier(n_estimators=5).fit(np.zeros((len(y), 3)), y)
    assert set(model.predict(np.ones((4, 3)))) == {"b"}
    np.testing.assert_array_equal(model.feature_importances_, np.zeros(3))


def test_gradient_boosting_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 classes"):
        GradientBoostingClassifier().fit(np.zeros((5, 2)), np.ones(5))
    with pytest.raises(ValueError, match="x has shape"):
        GradientBoostingClassifier().fit(np.zeros(5), np.arange(5))
    with pytest.raises(ValueError, match="max_bins"):
        GradientBoostingClassifier(max_bins=1000)
    model = GradientBoostingClassifier(n_estimators=2).fit(np.arange(10.0)[:, None], np.arange(10) % 2)
    with pytest.raises(ValueError, match=r"expected \(n, 1\)"):
        model.predict(np.zeros((3, 2)))


def test_make_gradient_boosting_backends(monkeypatch):
    assert isinstance(make_gradient_boosting("fast"), GradientBoostingClassifier)
    with pytest.raises(ValueError, match="backend='slow'"):
        make_gradient_boosting("slow")
    monkeypatch.setitem(__import__("sys").modules, "sklearn.ensemble", None)  # as if scikit-learn were missing
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        make_gradient_boosting("reference")


# ----------------------------------------------------------------------------------------- DCI
def test_dci_arithmetic_matches_scipy_entropies():
    stats = pytest.importorskip("scipy.stats")
    importance = np.random.default_rng(0).random((5, 3)) ** 3
    per_latent = 1 - stats.entropy(importance.T + 1e-11, base=3)
    per_factor = 1 - stats.entropy(importance + 1e-11, base=5)
    shares = importance / importance.sum()
    assert _disentanglement(importance) == pytest.approx(np.sum(per_latent * shares.sum(axis=1)))
    assert _completeness(importance) == pytest.approx(np.sum(per_factor * shares.sum(axis=0)))


def test_dci_arithmetic_by_hand():
    assert _disentanglement(np.eye(3)) == pytest.approx(1) and _completeness(np.eye(3)) == pytest.approx(1)
    assert _disentanglement(np.ones((3, 2))) == pytest.approx(0) and _completeness(np.ones((3, 2))) == pytest.approx(0)
    one_latent_for_all = np.array([[1.0, 1.0], [0.0, 0.0]])  # complete but not disentangled
    assert _disentanglement(one_latent_for_all) == pytest.approx(0, abs=1e-6)
    assert _completeness(one_latent_for_all) == pytest.approx(1, abs=1e-6)
    assert _disentanglement(np.zeros((3, 2))) == pytest.approx(0)  # nothing learned: no disentanglement
    with pytest.raises(ValueError, match="at least 2 latents and 2 factors"):
        _disentanglement(np.ones((1, 3)))


def test_dci_identity_codes_score_one():
    scores = compute_dci(identity_codes(), np.random.default_rng(0), **SAMPLES)
    assert scores["disentanglement"] > 0.99 and scores["completeness"] > 0.99
    assert scores["informativeness_train"] == 1.0 and scores["informativeness_test"] == 1.0


def test_dci_constant_codes_score_zero():
    scores = compute_dci(constant_codes(), np.random.default_rng(0), **SAMPLES)
    assert scores["disentanglement"] == pytest.approx(0) and scores["completeness"] == pytest.approx(0)
    # The classifier can only predict each factor's most frequent class.
    assert scores["informativeness_test"] < 0.5


def test_dci_noise_codes_score_near_zero():
    # Random codes still identify the 120 grid points, so they are informative; but every latent
    # serves every factor.
    scores = compute_dci(noise_codes(), np.random.default_rng(0), **SAMPLES)
    assert scores["disentanglement"] < 0.1 and scores["completeness"] < 0.1


def test_dci_ignores_the_order_of_latents():
    importance = np.random.default_rng(0).random((4, 3))
    order = [2, 0, 3, 1]
    assert _disentanglement(importance[order]) == pytest.approx(_disentanglement(importance), abs=1e-15)
    assert _completeness(importance[order]) == pytest.approx(_completeness(importance), abs=1e-15)
    # End to end only up to ties: where two latents split a node's samples the same way (here: the
    # few grid points' repeated codes), the first latent wins; scikit-learn picks one at random.
    codes = make_codes(GRID + np.random.default_rng(1).normal(0, 0.3, GRID.shape))
    original = compute_dci(codes, np.random.default_rng(0), **SAMPLES)
    shuffled = compute_dci(permuted(codes, order), np.random.default_rng(0), **SAMPLES)
    assert shuffled == pytest.approx(original, abs=0.01)


def test_dci_fast_agrees_with_the_reference():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    grid = np.stack(np.unravel_index(np.arange(4 * 6 * 8), (4, 6, 8)), axis=1)
    codes = np.concatenate([grid + rng.normal(0, 0.4, grid.shape), rng.normal(size=(len(grid), 1))], axis=1)
    codes[:, 1] += 0.5 * codes[:, 0]
    codes = np.round(codes * 4) / 4  # few distinct values: the fast backend's bins are exact
    sample = rng.integers(0, len(grid), 1200)
    train, test = sample[:800], sample[800:]
    fast = _dci(codes[train], grid[train], codes[test], grid[test], backend="fast")
    reference = _dci(codes[train], grid[train], codes[test], grid[test], backend="reference")
    assert fast == pytest.approx(reference, abs=0.01)


def test_dci_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_test must be >= 1"):
        compute_dci(identity_codes(), np.random.default_rng(0), num_test=0)
    with pytest.raises(ValueError, match="backend='gpu'"):
        compute_dci(identity_codes(), np.random.default_rng(0), backend="gpu")
    with pytest.raises(ValueError, match="1 latents and 4 factors"):
        compute_dci(make_codes(GRID[:, :1]), np.random.default_rng(0))


# ----------------------------------------------------------------------------------------- SAP
def test_sap_arithmetic_by_hand():
    scores = np.array([[0.9, 0.2, 0.5], [0.3, 0.8, 0.5], [0.1, 0.7, 0.4]])
    assert _sap(scores) == pytest.approx(np.mean([0.9 - 0.3, 0.8 - 0.7, 0.0]))
    with pytest.raises(ValueError, match="at least 2 latents"):
        _sap(scores[:1])


@pytest.mark.parametrize("continuous_factors", [False, True])
def test_sap_identity_codes_score_high_and_uninformative_codes_zero(continuous_factors):
    identity = compute_sap(identity_codes(), np.random.default_rng(0), continuous_factors=continuous_factors, **SAMPLES)
    noise = compute_sap(noise_codes(), np.random.default_rng(0), continuous_factors=continuous_factors, **SAMPLES)
    constant = compute_sap(constant_codes(), np.random.default_rng(0), continuous_factors=continuous_factors, **SAMPLES)
    # With continuous factors the identity scores are squared correlations of 1 against ~0. A 1-D
    # linear SVM with C=0.01 separates two classes but only the extreme classes of more, so the
    # discrete gap is smaller (the reference behaves the same way).
    assert identity["sap"] > (0.95 if continuous_factors else 0.4)
    assert noise["sap"] < 0.05
    assert constant["sap"] == 0.0


def test_sap_ignores_the_order_of_latents():
    codes = make_codes(GRID + np.random.default_rng(1).normal(0, 0.3, GRID.shape))
    original = compute_sap(codes, np.random.default_rng(0), **SAMPLES)
    assert compute_sap(permuted(codes), np.random.default_rng(0), **SAMPLES) == pytest.approx(original, abs=1e-12)


def test_sap_rejects_bad_input():
    with pytest.raises(ValueError, match="num_train must be >= 1"):
        compute_sap(identity_codes(), np.random.default_rng(0), num_train=0)


# --------------------------------------------------------------------- modularity, explicitness
def test_modularity_arithmetic_by_hand():
    assert _modularity(np.diag([0.5, 1.0, 2.0])) == pytest.approx(1.0)
    assert _modularity(np.array([[1.0, 1.0, 1.0]])) == pytest.approx(0.0)  # equal information about all
    assert _modularity(np.zeros((2, 3))) == 0.0  # no information: 0, not NaN
    # 1 - (0.5^2) / (1^2 * (2 - 1)) for the first latent, 1 for the second
    assert _modularity(np.array([[1.0, 0.5], [0.0, 0.3]])) == pytest.approx((0.75 + 1.0) / 2)
    with pytest.raises(ValueError, match="at least 2 factors"):
        _modularity(np.ones((3, 1)))


def test_modularity_explicitness_identity_codes_score_one():
    scores = compute_modularity_explicitness(identity_codes(), np.random.default_rng(0), **SAMPLES)
    assert scores["modularity"] > 0.99
    assert scores["explicitness_train"] > 0.99 and scores["explicitness_test"] > 0.99


def test_modularity_explicitness_uninformative_codes():
    constant = compute_modularity_explicitness(constant_codes(), np.random.default_rng(0), **SAMPLES)
    assert constant == pytest.approx({"modularity": 0.0, "explicitness_train": 0.5, "explicitness_test": 0.5})
    # Random codes: no linear read-out beyond chance. (Their modularity is not ~0: the small plug-in
    # information of a random latent is spread unevenly over the factors.)
    noise = compute_modularity_explicitness(
        make_codes(np.random.default_rng(0).normal(size=(len(GRID), 4))),
        np.random.default_rng(0),
        num_train=4000,
        num_test=2000,
    )
    assert noise["explicitness_test"] < 0.7


def test_modularity_explicitness_ignore_the_order_of_latents():
    codes = make_codes(GRID + np.random.default_rng(1).normal(0, 0.5, GRID.shape))
    original = compute_modularity_explicitness(codes, np.random.default_rng(0), **SAMPLES)
    shuffled = compute_modularity_explicitness(permuted(codes), np.random.default_rng(0), **SAMPLES)
    assert shuffled == pytest.approx(original, abs=1e-5)


def test_modularity_explicitness_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_bins must be >= 1"):
        compute_modularity_explicitness(identity_codes(), np.random.default_rng(0), num_bins=0)
