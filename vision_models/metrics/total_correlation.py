"""Gaussian total correlation of the mean codes: disentanglement_lib's unsupervised metric.

Fit a Gaussian to the mean codes of random grid points; its total correlation (the KL divergence
from the Gaussian to the product of its marginals) is 0.5 * (sum_j log var_j - log det Cov), in
nats. 0 when the latents are uncorrelated; it grows as they share linear information. No labels
are used: the grid only supplies the images.
"""

from __future__ import annotations

import numpy as np

from vision_models.metrics.codes import FactorCodes


def compute_gaussian_total_correlation(
    codes: FactorCodes, rng: np.random.Generator, num_train: int = 10000
) -> dict[str, float]:
    """{"gaussian_total_correlation"} of the mean codes of ``num_train`` random grid points."""
    if num_train < 2:
        raise ValueError(f"num_train must be >= 2 to estimate a covariance, got {num_train}")
    _, mean = codes.sample(num_train, rng)
    covariance = np.atleast_2d(np.cov(mean.astype(np.float64), rowvar=False))
    return {"gaussian_total_correlation": _gaussian_total_correlation(covariance)}


def _gaussian_total_correlation(covariance: np.ndarray) -> float:
    """Total correlation (nats) of a Gaussian with this covariance (D, D).

    Latents with zero variance are constant, hence independent of the rest, and are left out (where
    disentanglement_lib would return nan). A singular covariance among the others means some latent
    is an exact linear function of the rest: the total correlation is infinite (inf when the
    determinant rounds to <= 0; otherwise a large finite number, ~18 nats for a copied latent).
    """
    covariance = np.asarray(covariance, dtype=np.float64)
    if covariance.ndim != 2 or covariance.shape[0] != covariance.shape[1]:
        raise ValueError(f"covariance has shape {covariance.shape}; expected a square (D, D) matrix")
    varying = np.diag(covariance) > 0
    covariance = covariance[np.ix_(varying, varying)]
    if len(covariance) == 0:
        return 0.0
    sign, log_determinant = np.linalg.slogdet(covariance)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.sum(np.log(np.diag(covariance))) - log_determinant))
