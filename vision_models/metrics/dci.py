"""DCI: disentanglement, completeness and informativeness (Eastwood & Williams, ICLR 2018),
as disentanglement_lib computes it.

For every factor a gradient-boosted tree classifier predicts the factor's class from the mean code;
its feature importances are that factor's column of the importance matrix R (D latents x K factors).

- disentanglement: per latent, 1 - the entropy (base K) of its row of R normalised over factors,
  averaged with weights proportional to the latent's total importance;
- completeness: per factor, 1 - the entropy (base D) of its column normalised over latents,
  averaged with weights proportional to the factor's total importance;
- informativeness: the classifiers' accuracy, mean over factors, on the training and the test
  points (disentanglement_lib's reading; the paper reports a prediction error instead).

backend="fast" uses gradient_boosting.GradientBoostingClassifier (seconds); backend="reference"
uses scikit-learn's GradientBoostingClassifier, the reference's own classifier (minutes).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from vision_models.metrics.codes import FactorCodes
from vision_models.metrics.gradient_boosting import BACKENDS, make_gradient_boosting

# disentanglement_lib adds this to every importance before normalising (scipy.stats.entropy(R + 1e-11)),
# which makes an all-zero row or column uniform instead of undefined.
_IMPORTANCE_FLOOR = 1e-11


def compute_dci(
    codes: FactorCodes, rng: np.random.Generator, num_train: int = 10000, num_test: int = 5000, backend: str = "fast"
) -> dict[str, float]:
    """{"disentanglement", "completeness", "informativeness_train", "informativeness_test"} of the mean
    codes of ``num_train`` training and ``num_test`` test points drawn uniformly from the grid."""
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; expected one of {BACKENDS}")
    if codes.num_latents < 2 or codes.num_factors < 2:
        raise ValueError(
            f"codes have {codes.num_latents} latents and {codes.num_factors} factors; DCI needs at "
            "least 2 of each (entropies are taken in base D and base K)"
        )
    train_factors, train_codes = codes.sample(num_train, rng)
    test_factors, test_codes = codes.sample(num_test, rng)
    return _dci(train_codes, train_factors, test_codes, test_factors, backend)


def _dci(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    backend: str = "fast",
) -> dict[str, float]:
    """DCI scores from codes (n, D) and factor classes (n, K) of a training and a test set."""
    importance, train_accuracy, test_accuracy = _importance_matrix(
        train_codes, train_factors, test_codes, test_factors, backend
    )
    return {
        "disentanglement": _disentanglement(importance),
        "completeness": _completeness(importance),
        "informativeness_train": train_accuracy,
        "informativeness_test": test_accuracy,
    }


def _importance_matrix(
    train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, test_factors: np.ndarray, backend: str
) -> tuple[np.ndarray, float, float]:
    """(importance matrix (D, K), mean train accuracy, mean test accuracy): one classifier per factor.

    The factors' classifiers are independent and spend their time in numpy, torch or scikit-learn
    loops that release the GIL, so they are fitted in threads, as many as torch may use (1 in the
    tests, the cores otherwise); the results do not depend on it.
    """

    def fit(factor: int) -> tuple[np.ndarray, float, float]:
        classifier = make_gradient_boosting(backend).fit(train_codes, train_factors[:, factor])
        return (
            np.abs(classifier.feature_importances_),
            float(np.mean(classifier.predict(train_codes) == train_factors[:, factor])),
            float(np.mean(classifier.predict(test_codes) == test_factors[:, factor])),
        )

    num_factors = train_factors.shape[1]
    # Factors with the most classes (the longest fits) first, so that the threads finish together.
    order = sorted(range(num_factors), key=lambda factor: -len(np.unique(train_factors[:, factor])))
    with ThreadPoolExecutor(max_workers=torch.get_num_threads()) as pool:
        fits = dict(zip(order, pool.map(fit, order)))
    importances, train_accuracy, test_accuracy = zip(*(fits[factor] for factor in range(num_factors)))
    return np.stack(importances, axis=1), float(np.mean(train_accuracy)), float(np.mean(test_accuracy))


def _disentanglement(importance: np.ndarray) -> float:
    """Importance-weighted mean over latents of 1 - entropy of the latent's importance over factors."""
    _check_importance(importance)
    per_latent = 1.0 - _entropy(importance, axis=1)
    return float(np.sum(per_latent * _shares(importance, axis=1)))


def _completeness(importance: np.ndarray) -> float:
    """Importance-weighted mean over factors of 1 - entropy of the factor's importance over latents."""
    _check_importance(importance)
    per_factor = 1.0 - _entropy(importance, axis=0)
    return float(np.sum(per_factor * _shares(importance, axis=0)))


def _entropy(importance: np.ndarray, axis: int) -> np.ndarray:
    """Entropy of the importances normalised along ``axis``, in units of log(length along ``axis``)."""
    probabilities = importance + _IMPORTANCE_FLOOR
    probabilities = probabilities / probabilities.sum(axis=axis, keepdims=True)
    return -np.sum(probabilities * np.log(probabilities), axis=axis) / np.log(importance.shape[axis])


def _shares(importance: np.ndarray, axis: int) -> np.ndarray:
    """Each latent's (axis=1) or factor's (axis=0) share of the total importance; equal shares if it is 0."""
    if importance.sum() == 0:
        importance = np.ones_like(importance)
    return importance.sum(axis=axis) / importance.sum()


def _check_importance(importance: np.ndarray) -> None:
    if importance.ndim != 2 or min(importance.shape) < 2:
        raise ValueError(
            f"importance matrix has shape {importance.shape}; DCI needs (D, K) with at least "
            "2 latents and 2 factors (entropies are taken in base D and base K)"
        )
