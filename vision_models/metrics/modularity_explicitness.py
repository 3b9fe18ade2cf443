"""Modularity and explicitness (Ridgeway & Zemel, NeurIPS 2018), as disentanglement_lib computes them.

- modularity: each latent should carry information about one factor only. With m_jk the mutual
  information between latent j (discretised into ``num_bins`` equal-width bins, as for MIG) and
  factor k, and theta_j = max_k m_jk, a latent scores 1 - sum_{k != argmax} m_jk^2 / (theta_j^2 (K - 1))
  (0 if it carries no information); modularity is the mean over latents.
- explicitness: each factor should be linearly decodable from the whole code. Per factor, a
  logistic regression (scikit-learn's LogisticRegression, its defaults) on the standardised codes;
  its score is the ROC AUC (roc_auc_score) of the predicted class probabilities, one-vs-rest,
  averaged over classes; explicitness is the mean over factors, on the training and the test points.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from vision_models.metrics.codes import FactorCodes
from vision_models.metrics.mig import _discrete_mutual_information, _histogram_discretize


def compute_modularity_explicitness(
    codes: FactorCodes, rng: np.random.Generator, num_train: int = 10000, num_test: int = 5000, num_bins: int = 20
) -> dict[str, float]:
    """{"modularity", "explicitness_train", "explicitness_test"} of the mean codes of ``num_train``
    training and ``num_test`` test points drawn uniformly from the grid."""
    for name, value in (("num_train", num_train), ("num_test", num_test), ("num_bins", num_bins)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    train_factors, train_codes = codes.sample(num_train, rng)
    test_factors, test_codes = codes.sample(num_test, rng)
    information = _discrete_mutual_information(_histogram_discretize(train_codes, num_bins), train_factors)
    explicitness_train, explicitness_test = _explicitness(train_codes, train_factors, test_codes, test_factors)
    return {
        "modularity": _modularity(information),
        "explicitness_train": explicitness_train,
        "explicitness_test": explicitness_test,
    }


def _modularity(information: np.ndarray) -> float:
    """Mean over latents of how much of a latent's (squared) information (D, K) goes to its top factor."""
    if information.ndim != 2 or information.shape[1] < 2:
        raise ValueError(
            f"mutual information has shape {information.shape}; modularity needs (D, K) with at least 2 factors"
        )
    squared = np.square(information)
    top = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_latent = 1.0 - (squared.sum(axis=1) - top) / (top * (squared.shape[1] - 1))
    return float(np.mean(np.where(top > 0, per_latent, 0.0)))


def _explicitness(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray
) -> tuple[float, float]:
    """Mean over factors of the one-vs-rest ROC AUC of scikit-learn's LogisticRegression on standardised codes.

    The codes are standardised with the training points' mean and standard deviation (StandardScaler:
    a constant latent is only centred, it stays 0 and carries nothing, where the reference divides by 0).
    Like the reference, a fit may stop at max_iter=100 short of the optimum.
    """
    scaler = StandardScaler().fit(train_codes)
    train_inputs, test_inputs = scaler.transform(train_codes), scaler.transform(test_codes)
    train_scores, test_scores = [], []
    for factor in range(train_factors.shape[1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier = LogisticRegression().fit(train_inputs, train_factors[:, factor])
        train_scores.append(
            _mean_roc_auc(train_factors[:, factor], classifier.predict_proba(train_inputs), classifier.classes_)
        )
        test_scores.append(
            _mean_roc_auc(test_factors[:, factor], classifier.predict_proba(test_inputs), classifier.classes_)
        )
    return float(np.mean(train_scores)), float(np.mean(test_scores))


def _mean_roc_auc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    """roc_auc_score of each column of ``probabilities`` (n, C) for "label == classes[c]", averaged over classes.

    The reference's macro average of roc_auc_score on one-hot labels. A class with no positive or no
    negative sample among ``labels`` has no AUC and is left out of the average.
    """
    aucs = [
        roc_auc_score(labels == cls, probabilities[:, column])
        for column, cls in enumerate(classes)
        if 0 < np.sum(labels == cls) < len(labels)
    ]
    if not aucs:
        raise ValueError(f"labels take a single value among classes {classes.tolist()}; ROC AUC needs two")
    return float(np.mean(aucs))
