"""Mutual Information Gap: disentanglement_lib's discrete MIG and Chen et al.'s sampled MIG.

Both score, for each factor, the gap between the two latents that carry the most information about
it, divided by the factor's entropy, averaged over factors. They estimate the information
differently and give different numbers, so they are reported under different keys:

- "mig" (``compute_mig``, disentanglement_lib): the mean codes of ``num_train`` grid points, each
  latent discretised into ``num_bins`` equal-width bins, plug-in discrete mutual information (nats)
  with each factor, normalised by the factor's empirical entropy.
- "sampled_mig" (``compute_sampled_mig``, Chen et al. 2018, "Isolating Sources of Disentanglement"):
  the mutual information between a sample z_j ~ q(z_j|x) and the factor, I = H(z_j) - H(z_j|v_k),
  with q(z_j) and q(z_j|v_k) the encoder's posteriors averaged over the data (resp. over the grid
  slice where factor k takes value v), entropies estimated by Monte Carlo; normalised by log(size_k).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import mutual_info_score

from vision_models.beta_tcvae import gaussian_log_density
from vision_models.metrics.codes import FactorCodes, NotApplicable

# Samples whose mixture densities are evaluated at once: samples x components x latents float32 values.
_SAMPLES_PER_CHUNK = 256
# Mixture terms this far (in log) below a sample's largest are negligible in float32: see _log_mixture_density.
_NEGLIGIBLE_LOG_RATIO = 30.0


def compute_mig(
    codes: FactorCodes, rng: np.random.Generator, num_train: int = 10000, num_bins: int = 20
) -> dict[str, float]:
    """{"mig"}: disentanglement_lib's discrete MIG of the mean codes of ``num_train`` random grid points."""
    if num_train < 2:
        raise ValueError(f"num_train must be >= 2, got {num_train}")
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    factors, mean = codes.sample(num_train, rng)
    return {"mig": _mig(_histogram_discretize(mean, num_bins), factors)}


def _histogram_discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin index of every code (n, D), per latent: ``num_bins`` equal-width bins spanning that latent's range."""
    binned = np.empty(codes.shape, dtype=np.int64)
    for latent in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, latent], bins=num_bins)
        binned[:, latent] = np.digitize(codes[:, latent], edges[:-1])  # the maximum falls in the last bin
    return binned


def _discrete_mutual_information(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Plug-in mutual information (nats) between every column of ``codes`` (n, D) and of ``factors`` (n, K): (D, K).

    disentanglement_lib's discrete_mutual_info: scikit-learn's mutual_info_score per pair.
    """
    information = [[mutual_info_score(factor, code) for factor in factors.T] for code in codes.T]
    return np.array(information, dtype=np.float64).reshape(codes.shape[1], factors.shape[1])


def _discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Plug-in entropy (nats) of every column of ``factors`` (n, K): disentanglement_lib's discrete_entropy."""
    return np.array([mutual_info_score(factor, factor) for factor in factors.T])


def _mig(discrete_codes: np.ndarray, factors: np.ndarray) -> float:
    """Discrete MIG of binned codes (n, D) against factor classes (n, K)."""
    if discrete_codes.shape[1] < 2:
        raise ValueError(f"codes have {discrete_codes.shape[1]} latent; MIG needs at least 2 to take a gap")
    information = _discrete_mutual_information(discrete_codes, factors)  # (D, K)
    entropies = _discrete_entropy(factors)
    if np.any(entropies <= 0):
        raise ValueError(
            f"factors {np.flatnonzero(entropies <= 0).tolist()} take a single value in the sample; "
            "MIG needs every factor to vary"
        )
    top_two = -np.sort(-information, axis=0)[:2]
    return float(np.mean((top_two[0] - top_two[1]) / entropies))


def compute_sampled_mig(
    codes: FactorCodes,
    rng: np.random.Generator,
    num_samples: int = 10000,
    num_components: int = 1000,
    factor_names: Sequence[str] | None = None,
) -> dict[str, float]:
    """{"sampled_mig"}: Chen et al.'s MIG from the posteriors q(z|x) (needs ``codes.logvar``).

    ``num_samples`` grid points x are drawn and one z ~ q(z|x) each; H(z_j) is the mean of -log q(z_j)
    over them. Chen et al. average q(z_j|x) over the whole grid, which is num_samples x grid-size
    density evaluations per latent (10^10 on dSprites); here the average is estimated from
    ``num_components`` random grid points instead. For H(z_j|v_k) the same components, with factor k
    set to the sample's value v, are a uniform draw from the slice v_k = v.

    Each estimate counts the sample's own x exactly, at its weight 1/(population size), and the random
    components stand for the rest of the population (``_log_population_density``). Without that, a
    narrow posterior is found again only when a random component happens to be its own x, which is
    far likelier in a slice (size N/size_k) than in the grid (size N): H(z_j) came out too high and
    the information up to hundreds of times log(size_k) (a CollectGoodObjects β-VAE_DAE scored 7.4).

    ``factor_names`` picks the factors to average over (default: all). Chen et al. leave dSprites'
    shape out; pass the other four names to compare with their numbers.
    """
    if codes.logvar is None:
        raise NotApplicable(
            "codes.logvar is None: the sampled MIG needs the posterior q(z|x) (mean and logvar) of a "
            "stochastic encoder; use compute_mig for deterministic codes"
        )
    if num_samples < 1 or num_components < 1:
        raise ValueError(f"num_samples and num_components must be >= 1, got {num_samples} and {num_components}")
    names = tuple(codes.factor_names) if factor_names is None else tuple(factor_names)
    unknown = [name for name in names if name not in codes.factor_names]
    if unknown or not names:
        raise ValueError(f"factor_names {list(names)} must be a non-empty subset of {list(codes.factor_names)}")
    chosen = [codes.factor_names.index(name) for name in names]
    if any(codes.factor_sizes[factor] < 2 for factor in chosen):
        raise ValueError(
            f"factor_names {list(names)} include a factor with a single value (sizes "
            f"{codes.factor_sizes}); its entropy is 0, so its gap cannot be normalised"
        )

    sample_factors = codes.sample_factors(num_samples, rng)
    rows = codes.rows(sample_factors)
    std = np.exp(0.5 * codes.logvar[rows].astype(np.float64))
    samples = codes.mean[rows] + std * rng.standard_normal(std.shape)
    components = codes.sample_factors(num_components, rng)

    grid_size = len(codes.mean)
    marginal_entropy = -_log_population_density(codes, samples, rows, components, grid_size).mean(axis=0)  # (D,)
    information = np.empty((len(chosen), codes.num_latents))
    for row, factor in enumerate(chosen):
        conditional_entropy = np.zeros(codes.num_latents)
        for value in range(codes.factor_sizes[factor]):
            in_slice = sample_factors[:, factor] == value
            if in_slice.any():
                slice_components = components.copy()
                slice_components[:, factor] = value
                conditional_entropy -= _log_population_density(
                    codes, samples[in_slice], rows[in_slice], slice_components, grid_size // codes.factor_sizes[factor]
                ).sum(axis=0)
        information[row] = marginal_entropy - conditional_entropy / num_samples
    factor_entropies = np.log(np.asarray(codes.factor_sizes, dtype=np.float64)[chosen])
    return {"sampled_mig": _sampled_mig(information, factor_entropies)}


def _log_population_density(
    codes: FactorCodes, points: np.ndarray, own_rows: np.ndarray, component_factors: np.ndarray, population_size: int
) -> np.ndarray:
    """log q(z_j) over a population of grid points (the grid, or one slice of it) per sample: (S, D).

    q(z_j) = (1/n) q(z_j|own x) + (1 - 1/n) * (mean of q(z_j|x) over the population's other points),
    n = ``population_size``; the sample's own x (``own_rows``) is counted exactly and the other
    points' mean is estimated from the random components that are not its own x.
    """
    component_rows = codes.rows(component_factors)
    others = _log_mixture_density(
        points, codes.mean[component_rows], codes.logvar[component_rows], exclude=(own_rows, component_rows)
    )
    own = gaussian_log_density(
        *(torch.from_numpy(np.asarray(a, np.float64)) for a in (points, codes.mean[own_rows], codes.logvar[own_rows]))
    ).numpy()
    if population_size == 1:
        return own
    with np.errstate(divide="ignore"):  # others is -inf for a sample whose components are all its own x
        return np.logaddexp(own - math.log(population_size), others + math.log1p(-1 / population_size))


def _log_mixture_density(
    points: np.ndarray, means: np.ndarray, logvars: np.ndarray, exclude: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """log (1/M) sum_m N(points[s, j]; means[m, j], exp(logvars[m, j])) per sample and latent: (S, D).

    ``exclude`` = (sample ids (S,), component ids (M,)) leaves out, per sample, the components with
    its id and averages over the M_s others (-inf where none is left).

    One-dimensional per latent: Chen et al.'s MIG uses the marginal q(z_j) of each latent alone.
    Evaluated in float32 with torch, latent-major so that the sum over components is contiguous:
    about 3x faster than float64 numpy, and the log-densities agree to ~1e-6. Terms more than
    ``_NEGLIGIBLE_LOG_RATIO`` below a sample's largest are raised to that floor before exp: they add
    < M * e^-30 relative to the sum, and exp of a float32 near its underflow is ~10x slower (narrow
    posteriors put most terms there).
    """
    points_t = torch.from_numpy(np.ascontiguousarray(points.T, dtype=np.float32))  # (D, S)
    means_t = torch.from_numpy(np.ascontiguousarray(means.T, dtype=np.float32))[:, None, :]  # (D, 1, M)
    logvars_t = torch.from_numpy(np.ascontiguousarray(logvars.T, dtype=np.float32))[:, None, :]
    inverse_variances = torch.exp(-logvars_t)
    log_normaliser = -0.5 * (math.log(2 * math.pi) + logvars_t)
    if exclude is None:
        keep = torch.ones((points_t.shape[1], means.shape[0]), dtype=torch.bool)
    else:
        keep = torch.from_numpy(np.asarray(exclude[0])[:, None] != np.asarray(exclude[1])[None, :])
    log_counts = keep.sum(dim=1).clamp_(min=1).float().log_()  # (S,); clamped: none left gives -inf, not nan
    result = torch.empty(points_t.shape, dtype=torch.float32)
    for start in range(0, points_t.shape[1], _SAMPLES_PER_CHUNK):
        chunk = points_t[:, start : start + _SAMPLES_PER_CHUNK, None]  # (D, s, 1)
        chunk_keep = keep[start : start + _SAMPLES_PER_CHUNK]  # (s, M)
        log_terms = (chunk - means_t).square_().mul_(inverse_variances).mul_(-0.5).add_(log_normaliser)
        log_terms.masked_fill_(~chunk_keep, -math.inf)
        peak = log_terms.amax(dim=2, keepdim=True)
        peak.masked_fill_(peak == -math.inf, 0.0)  # a sample with no component left: its sum is 0
        terms = log_terms.sub_(peak).clamp_(min=-_NEGLIGIBLE_LOG_RATIO).exp_().mul_(chunk_keep)
        log_sum = terms.sum(dim=2).log_()
        result[:, start : start + chunk.shape[1]] = (
            log_sum + peak.squeeze(2) - log_counts[start : start + chunk.shape[1]]
        )
    return result.T.double().numpy()


def _sampled_mig(information: np.ndarray, factor_entropies: np.ndarray) -> float:
    """Chen et al.'s gap from mutual information (K, D) and factor entropies (K,); negative estimates count as 0."""
    if information.shape[1] < 2:
        raise ValueError(f"codes have {information.shape[1]} latent; MIG needs at least 2 to take a gap")
    normalised = np.clip(information, 0.0, None) / factor_entropies[:, None]
    top_two = -np.sort(-normalised, axis=1)[:, :2]
    return float(np.mean(top_two[:, 0] - top_two[:, 1]))
