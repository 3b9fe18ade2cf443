"""Unsupervised Disentanglement Ranking (UDR; Duan et al., ICLR 2020), as disentanglement_lib computes it.

Disentangled models trained from different seeds tend to agree with one another up to a permutation
and sign flips of the latents; entangled ones each mix the factors in their own way. UDR needs no
labels: encode the same images with every model, and for each pair of models (a, b) build a matrix
R of how strongly each latent of a relates to each latent of b, over their informative latents only
(mean KL to the prior above a threshold). The pair's score is the relative strength of R: for every
latent the square of its strongest link divided by the sum of its links, averaged over the latents
of a and of b, and the two halves averaged; it is 1 when R is a permutation. A model's UDR is the
median of its pair scores with all other models.

R is the absolute Spearman rank correlation by default (UDR_S in the paper: no parameters, and a
monotone reparametrisation of a latent changes nothing), or the absolute coefficients of a Lasso
regression (alpha 0.1) of b's standardised latents on a's ("lasso", UDR_L, disentanglement_lib's
default).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import stats
from sklearn.linear_model import Lasso
from sklearn.preprocessing import StandardScaler

CORRELATIONS = ("spearman", "lasso")


def compute_udr(
    means: Sequence[np.ndarray],
    rng: np.random.Generator,
    kl_per_dim: Sequence[np.ndarray] | None = None,
    num_samples: int = 1000,
    correlation: str = "spearman",
    kl_threshold: float = 0.01,
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """{"udr_<name>": score} for every model, from their mean codes of the SAME images.

    ``means``: one (N, D_i) array per model, row n the code of image n for every model.
    ``kl_per_dim``: one (D_i,) array per model, its mean KL(q(z_j|x) || p(z_j)) per latent (see
    ``mean_kl_per_latent``); latents at or below ``kl_threshold`` are left out. None keeps every latent.
    ``num_samples`` images are drawn without replacement (all of them when N is smaller); 1000 is
    disentanglement_lib's setting. ``names`` default to the models' positions "0", "1", ...
    """
    if len(means) < 2:
        raise ValueError(f"means holds {len(means)} model(s); UDR compares models, so it needs at least 2")
    means = [np.asarray(m, dtype=np.float64) for m in means]
    num_images = len(means[0])
    if any(m.ndim != 2 or len(m) != num_images for m in means):
        raise ValueError(
            f"means have shapes {[m.shape for m in means]}; expected (N, D_i) arrays with the same N "
            "(the same images encoded by every model)"
        )
    if num_images < 2:
        raise ValueError(f"means have {num_images} row(s); correlations need at least 2 images")
    if correlation not in CORRELATIONS:
        raise ValueError(f"correlation must be one of {CORRELATIONS}, got {correlation!r}")
    names = [str(i) for i in range(len(means))] if names is None else [str(name) for name in names]
    if len(names) != len(means) or len(set(names)) != len(names):
        raise ValueError(f"names {names} must be {len(means)} distinct names, one per model")
    if kl_per_dim is None:
        informative = [np.ones(m.shape[1], dtype=bool) for m in means]
    else:
        if len(kl_per_dim) != len(means) or any(np.shape(kl) != (m.shape[1],) for kl, m in zip(kl_per_dim, means)):
            raise ValueError(
                f"kl_per_dim must hold one (D_i,) array per model, matching means' shapes {[m.shape for m in means]}"
            )
        informative = [np.asarray(kl) > kl_threshold for kl in kl_per_dim]
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")

    rows = rng.choice(num_images, size=min(num_samples, num_images), replace=False)
    representations = [m[rows][:, keep] for m, keep in zip(means, informative)]
    scores = _udr_model_scores(_pairwise_udr(representations, correlation))
    return {f"udr_{name}": float(score) for name, score in zip(names, scores)}


def mean_kl_per_latent(mean: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """Mean over images of KL(N(mean, exp(logvar)) || N(0, 1)) per latent: (N, D) -> (D,)."""
    mean = np.asarray(mean, dtype=np.float64)
    logvar = np.asarray(logvar, dtype=np.float64)
    return np.mean(0.5 * (mean**2 + np.exp(logvar) - logvar - 1.0), axis=0)


def _pairwise_udr(representations: Sequence[np.ndarray], correlation: str) -> np.ndarray:
    """Pair scores (P, P): entry [a, b] the relative strength of R(a -> b); the diagonal is unused (nan)."""
    num_models = len(representations)
    pairwise = np.full((num_models, num_models), np.nan)
    for a in range(num_models):
        for b in range(num_models):
            if a != b:
                if correlation == "spearman":
                    strength = _spearman_matrix(representations[a], representations[b])
                else:
                    strength = _lasso_matrix(representations[a], representations[b])
                pairwise[a, b] = _relative_strength(strength)
    return pairwise


def _udr_model_scores(pairwise: np.ndarray) -> np.ndarray:
    """Each model's UDR: the median of the pair scores in its column, itself left out."""
    num_models = len(pairwise)
    return np.array([np.median(np.delete(pairwise[:, i], i)) for i in range(num_models)])


def _relative_strength(strength: np.ndarray) -> float:
    """Relative strength of a non-negative (D_a, D_b) matrix: 1 for a permutation, lower as links spread.

    A latent with no link at all (a zero row or column) counts 0; so does a model with no informative latent.
    """
    if strength.size == 0:
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        per_column = np.nan_to_num(strength.max(axis=0) ** 2 / strength.sum(axis=0))
        per_row = np.nan_to_num(strength.max(axis=1) ** 2 / strength.sum(axis=1))
    return float((per_column.mean() + per_row.mean()) / 2)


def _spearman_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """|Spearman correlation| between every latent of ``first`` (n, A) and of ``second`` (n, B): (A, B).

    scipy's spearmanr, as disentanglement_lib. A constant latent has no defined correlation; it
    counts as unrelated (0).
    """
    num_first, num_second = first.shape[1], second.shape[1]
    if num_first == 0 or num_second == 0:
        return np.zeros((num_first, num_second))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        correlation = stats.spearmanr(first, second).statistic  # (A + B, A + B); a number when A = B = 1
    block = np.reshape(correlation, (1, 1)) if np.ndim(correlation) == 0 else correlation[:num_first, num_first:]
    return np.nan_to_num(np.abs(block))


def _lasso_matrix(first: np.ndarray, second: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """|Lasso coefficients| regressing each standardised latent of ``second`` on those of ``first``: (A, B).

    scikit-learn's Lasso with disentanglement_lib's settings (alpha 0.1, otherwise the defaults) on
    StandardScaler'd latents (a constant latent stays a zero column).
    """
    if first.shape[1] == 0 or second.shape[1] == 0:
        return np.zeros((first.shape[1], second.shape[1]))
    x, y = StandardScaler().fit_transform(first), StandardScaler().fit_transform(second)
    return np.abs(Lasso(alpha=alpha).fit(x, y).coef_).reshape(second.shape[1], first.shape[1]).T
