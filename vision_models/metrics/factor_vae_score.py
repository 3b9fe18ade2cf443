"""FactorVAE score (Kim & Mnih, ICML 2018), as disentanglement_lib computes it.

Each latent is divided by its standard deviation over the whole grid, and latents whose standard
deviation is below ``prune_threshold`` (collapsed to the prior) are left out. One vote: draw a factor
k, draw ``batch_size`` grid points that share the value of factor k, and find the active latent with
the smallest normalised variance across them. The classifier maps each latent to the factor that won
most of its training votes; the score is the fraction of votes it gets right.
"""

from __future__ import annotations

import numpy as np

from vision_models.metrics.codes import FactorCodes

# Votes are drawn this many at a time: keeps the batches' codes at a few MB whatever num_train is.
_VOTES_PER_CHUNK = 1000


def compute_factor_vae_score(
    codes: FactorCodes,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_threshold: float = 0.05,
) -> dict[str, float]:
    """{"train_accuracy", "eval_accuracy", "num_active_dims"} of the FactorVAE score on ``codes``.

    With no active latent every accuracy is 0, as in disentanglement_lib. "num_active_dims" counts the
    latents kept; disentanglement_lib reports the length of its mask there, i.e. all latents.
    """
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 to have a variance, got {batch_size}")
    if num_variance_estimate < 2:
        raise ValueError(f"num_variance_estimate must be >= 2, got {num_variance_estimate}")
    for name, value in (("num_train", num_train), ("num_eval", num_eval)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    _, sample = codes.sample(num_variance_estimate, rng)
    global_variances = np.var(sample.astype(np.float64), axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    train_votes = _sample_votes(codes, rng, batch_size, num_train, global_variances, active)
    eval_votes = _sample_votes(codes, rng, batch_size, num_eval, global_variances, active)
    return {**_factor_vae_score(train_votes, eval_votes), "num_active_dims": float(active.sum())}


def _sample_votes(
    codes: FactorCodes,
    rng: np.random.Generator,
    batch_size: int,
    num_votes: int,
    global_variances: np.ndarray,
    active: np.ndarray,
) -> np.ndarray:
    """Vote counts (num_factors, num_active): row = the factor held fixed, column = the active latent that won."""
    fixed = rng.integers(0, codes.num_factors, num_votes)
    winners = np.empty(num_votes, dtype=np.int64)
    for start in range(0, num_votes, _VOTES_PER_CHUNK):
        chunk = fixed[start : start + _VOTES_PER_CHUNK]
        factors = codes.sample_factors(len(chunk) * batch_size, rng).reshape(len(chunk), batch_size, -1)
        is_fixed = np.arange(codes.num_factors) == chunk[:, None]  # (chunk, K)
        factors = np.where(is_fixed[:, None, :], factors[:, :1, :], factors)  # every row takes the first row's value
        batches = codes.lookup(factors.reshape(-1, codes.num_factors)).reshape(len(chunk), batch_size, -1)
        winners[start : start + len(chunk)] = _least_varying_latent(batches, global_variances, active)
    votes = np.zeros((codes.num_factors, int(active.sum())), dtype=np.int64)
    np.add.at(votes, (fixed, winners), 1)
    return votes


def _least_varying_latent(batches: np.ndarray, global_variances: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Per batch (n, batch_size, D): index, among the active latents, of the least variance / global variance."""
    local_variances = np.var(batches[..., active].astype(np.float64), axis=1, ddof=1)
    return np.argmin(local_variances / global_variances[active], axis=1)


def _factor_vae_score(train_votes: np.ndarray, eval_votes: np.ndarray) -> dict[str, float]:
    """Majority-vote classifier from the training votes (factors x latents); its accuracy on both vote sets."""
    predicted_factor = np.argmax(train_votes, axis=0)  # per latent
    latents = np.arange(train_votes.shape[1])
    return {
        "train_accuracy": float(train_votes[predicted_factor, latents].sum() / train_votes.sum()),
        "eval_accuracy": float(eval_votes[predicted_factor, latents].sum() / eval_votes.sum()),
    }
