"""SAP, the Separated Attribute Predictability score (Kumar et al., ICLR 2018), as disentanglement_lib
computes it.

Score matrix S (D latents x K factors): how well each single latent predicts each factor. For
discrete factors (the default) S[j, k] is the test accuracy of a linear SVM trained on latent j
alone to predict factor k's class (scikit-learn's LinearSVC with C=0.01 and balanced class
weights); for continuous factors it is the squared correlation of latent j and factor k on the
training points. SAP is the mean over factors of the gap between the two highest scores in the
factor's column: high when every factor is predicted by one latent much better than by any other.
"""

from __future__ import annotations

import numpy as np
from sklearn.svm import LinearSVC

from vision_models.metrics.codes import FactorCodes

# Below this variance a latent is constant: its squared correlation with any factor is taken as 0.
_MIN_VARIANCE = 1e-12


def compute_sap(
    codes: FactorCodes,
    rng: np.random.Generator,
    num_train: int = 10000,
    num_test: int = 5000,
    continuous_factors: bool = False,
) -> dict[str, float]:
    """{"sap"} of the mean codes of ``num_train`` training and ``num_test`` test points drawn uniformly
    from the grid (the test points are drawn in either case, as the reference does, and are only used
    for discrete factors)."""
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    train_factors, train_codes = codes.sample(num_train, rng)
    test_factors, test_codes = codes.sample(num_test, rng)
    scores = _score_matrix(train_codes, train_factors, test_codes, test_factors, continuous_factors)
    return {"sap": _sap(scores)}


def _score_matrix(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    continuous_factors: bool,
) -> np.ndarray:
    """How well each latent alone predicts each factor: (D, K)."""
    num_latents, num_factors = train_codes.shape[1], train_factors.shape[1]
    scores = np.zeros((num_latents, num_factors))
    for latent in range(num_latents):
        for factor in range(num_factors):
            if continuous_factors:
                scores[latent, factor] = _squared_correlation(train_codes[:, latent], train_factors[:, factor])
            else:
                classifier = LinearSVC(C=0.01, class_weight="balanced")
                classifier.fit(train_codes[:, latent, None], train_factors[:, factor])
                predictions = classifier.predict(test_codes[:, latent, None])
                scores[latent, factor] = np.mean(predictions == test_factors[:, factor])
    return scores


def _squared_correlation(code: np.ndarray, factor: np.ndarray) -> float:
    """cov(z, v)^2 / (var(z) var(v)); 0 where either does not vary."""
    covariance = np.cov(code.astype(np.float64), factor.astype(np.float64))
    if covariance[0, 0] <= _MIN_VARIANCE or covariance[1, 1] <= _MIN_VARIANCE:
        return 0.0
    return float(covariance[0, 1] ** 2 / (covariance[0, 0] * covariance[1, 1]))


def _sap(scores: np.ndarray) -> float:
    """Mean over factors (columns) of the gap between the best and the second-best latent's score."""
    if scores.ndim != 2 or scores.shape[0] < 2:
        raise ValueError(f"score matrix has shape {scores.shape}; SAP needs (D, K) with at least 2 latents")
    top_two = np.sort(scores, axis=0)[-2:]
    return float(np.mean(top_two[1] - top_two[0]))
