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

from collections.abc import Sequence

import numpy as np

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


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of each column of (n, D), ties sharing their average rank (Spearman's convention)."""
    ranks = np.empty(values.shape)
    for column in range(values.shape[1]):
        order = np.argsort(values[:, column], kind="stable")
        ordered = values[order, column]
        starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
        group = np.cumsum(starts_group) - 1
        first = np.flatnonzero(starts_group)
        size = np.diff(np.r_[first, len(ordered)])
        ranks[order, column] = (first + (size + 1) / 2)[group]
    return ranks


def _spearman_matrix(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """|Spearman correlation| between every latent of ``first`` (n, A) and of ``second`` (n, B): (A, B).

    A constant latent has no defined correlation; it counts as unrelated (0).
    """

    def standardised_ranks(values: np.ndarray) -> np.ndarray:
        centred = _average_ranks(values)
        centred -= centred.mean(axis=0)
        norms = np.linalg.norm(centred, axis=0)
        return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)

    return np.abs(standardised_ranks(first).T @ standardised_ranks(second))


def _lasso_matrix(
    first: np.ndarray, second: np.ndarray, alpha: float = 0.1, max_iter: int = 1000, tol: float = 1e-10
) -> np.ndarray:
    """|Lasso coefficients| regressing each standardised latent of ``second`` on those of ``first``: (A, B).

    Minimises (1/2n)||Y - X W||^2 + alpha ||W||_1 per column of Y (scikit-learn's Lasso objective) by
    cyclic coordinate descent on the Gram matrix; with standardised data the intercept is 0.
    """

    def standardised(values: np.ndarray) -> np.ndarray:
        centred = values - values.mean(axis=0)
        scale = centred.std(axis=0)
        return centred / np.where(scale > 0, scale, 1.0)  # a constant latent stays a zero column

    x, y = standardised(first), standardised(second)
    gram = x.T @ x / len(x)  # (A, A)
    covariance = x.T @ y / len(x)  # (A, B)
    weights = np.zeros(covariance.shape)
    for _ in range(max_iter):
        largest_step = 0.0
        for j in range(len(gram)):
            if gram[j, j] == 0:
                continue
            partial = covariance[j] - gram[j] @ weights + gram[j, j] * weights[j]
            updated = np.sign(partial) * np.maximum(np.abs(partial) - alpha, 0.0) / gram[j, j]
            largest_step = max(largest_step, float(np.max(np.abs(updated - weights[j]), initial=0.0)))
            weights[j] = updated
        if largest_step < tol:
            break
    return np.abs(weights)
