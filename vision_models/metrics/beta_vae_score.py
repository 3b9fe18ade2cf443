"""BetaVAE score (Higgins et al., ICLR 2017), as disentanglement_lib computes it.

One training point: draw a factor k uniformly, draw ``batch_size`` pairs of grid points that share
the value of factor k (everything else independent), and take the mean absolute difference of the
pairs' mean codes. A disentangled code has a near-zero coordinate exactly where factor k lives, so a
linear classifier (logistic regression, scikit-learn's defaults) can tell k from the feature. The
score is that classifier's accuracy on fresh points.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from vision_models.metrics.codes import FactorCodes

# Points are drawn this many at a time: keeps the pairs' codes at a few MB whatever num_train is.
_POINTS_PER_CHUNK = 1000


def compute_beta_vae_score(
    codes: FactorCodes, rng: np.random.Generator, batch_size: int = 64, num_train: int = 10000, num_eval: int = 5000
) -> dict[str, float]:
    """{"train_accuracy", "eval_accuracy"} of the BetaVAE score on the encoded grid ``codes``."""
    for name, value in (("batch_size", batch_size), ("num_train", num_train), ("num_eval", num_eval)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    train_features, train_labels = _sample_pair_features(codes, rng, batch_size, num_train)
    eval_features, eval_labels = _sample_pair_features(codes, rng, batch_size, num_eval)
    return _beta_vae_score(train_features, train_labels, eval_features, eval_labels)


def _sample_pair_features(
    codes: FactorCodes, rng: np.random.Generator, batch_size: int, num_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """(features (num_points, D), fixed factor of each point (num_points,)): mean |z1 - z2| over the pairs."""
    labels = rng.integers(0, codes.num_factors, num_points)
    features = np.empty((num_points, codes.num_latents))
    for start in range(0, num_points, _POINTS_PER_CHUNK):
        chunk = labels[start : start + _POINTS_PER_CHUNK]
        shape = (len(chunk), batch_size, codes.num_factors)
        first = codes.sample_factors(len(chunk) * batch_size, rng).reshape(shape)
        second = codes.sample_factors(len(chunk) * batch_size, rng).reshape(shape)
        shares_fixed_factor = (np.arange(codes.num_factors) == chunk[:, None])[:, None, :]
        second = np.where(shares_fixed_factor, first, second)
        difference = codes.lookup(first.reshape(-1, codes.num_factors)).astype(np.float64) - codes.lookup(
            second.reshape(-1, codes.num_factors)
        )
        features[start : start + len(chunk)] = np.abs(difference).reshape(len(chunk), batch_size, -1).mean(axis=1)
    return features, labels


def _beta_vae_score(
    train_features: np.ndarray, train_labels: np.ndarray, eval_features: np.ndarray, eval_labels: np.ndarray
) -> dict[str, float]:
    """Fit scikit-learn's LogisticRegression (its defaults, as disentanglement_lib) on the training points;
    its accuracy on both sets. Like the reference, the fit may stop at max_iter=100 short of the optimum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier = LogisticRegression().fit(train_features, train_labels)
    return {
        "train_accuracy": classifier.score(train_features, train_labels),
        "eval_accuracy": classifier.score(eval_features, eval_labels),
    }
