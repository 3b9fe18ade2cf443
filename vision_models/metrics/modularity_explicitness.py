"""Modularity and explicitness (Ridgeway & Zemel, NeurIPS 2018), as disentanglement_lib computes them.

- modularity: each latent should carry information about one factor only. With m_jk the mutual
  information between latent j (discretised into ``num_bins`` equal-width bins, as for MIG) and
  factor k, and theta_j = max_k m_jk, a latent scores 1 - sum_{k != argmax} m_jk^2 / (theta_j^2 (K - 1))
  (0 if it carries no information); modularity is the mean over latents.
- explicitness: each factor should be linearly decodable from the whole code. Per factor, a
  logistic regression (scikit-learn's defaults) on the standardised codes; its score is the ROC
  AUC of the predicted class probabilities, one-vs-rest, averaged over classes; explicitness is the
  mean over factors, on the training and the test points.
"""

from __future__ import annotations

import numpy as np

from vision_models.metrics.codes import FactorCodes
from vision_models.metrics.logistic import LogisticRegression
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
    """Mean over factors of the one-vs-rest ROC AUC of a logistic regression on standardised codes.

    The codes are standardised with the training points' mean and standard deviation (a constant
    latent is only centred: it stays 0 and carries nothing, where the reference divides by 0).
    """
    mean, std = train_codes.mean(axis=0), train_codes.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    train_inputs, test_inputs = (train_codes - mean) / std, (test_codes - mean) / std
    train_scores, test_scores = [], []
    for factor in range(train_factors.shape[1]):
        classifier = LogisticRegression().fit(train_inputs, train_factors[:, factor])
        train_scores.append(
            _mean_roc_auc(train_factors[:, factor], classifier.predict_proba(train_inputs), classifier.classes_)
        )
        test_scores.append(
            _mean_roc_auc(test_factors[:, factor], classifier.predict_proba(test_inputs), classifier.classes_)
        )
    return float(np.mean(train_scores)), float(np.mean(test_scores))


def _mean_roc_auc(labels: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    """ROC AUC of each column of ``probabilities`` (n, C) for "label == classes[c]", averaged over classes.

    The reference's macro average of scikit-learn's roc_auc_score on one-hot labels. A class with no
    positive or no negative sample among ``labels`` has no AUC and is left out of the average.
    """
    aucs = []
    for column, cls in enumerate(classes):
        positive = labels == cls
        num_positive = int(positive.sum())
        if 0 < num_positive < len(labels):
            ranks = _average_ranks(probabilities[:, column])
            # Mann-Whitney: the chance a positive outscores a negative, ties counting one half.
            aucs.append(
                (ranks[positive].sum() - num_positive * (num_positive + 1) / 2)
                / (num_positive * (len(labels) - num_positive))
            )
    if not aucs:
        raise ValueError(f"labels take a single value among classes {classes.tolist()}; ROC AUC needs two")
    return float(np.mean(aucs))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts_group = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    group = np.cumsum(starts_group) - 1
    first = np.flatnonzero(starts_group)  # position of each group's first value
    last = np.concatenate([first[1:], [len(values)]])  # one past each group's last value
    ranks = np.empty(len(values))
    ranks[order] = ((first + 1 + last) / 2)[group]
    return ranks
