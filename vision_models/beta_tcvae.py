"""beta-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

Averaged over the data, the KL term of the ELBO splits into three parts:

    E_x KL(q(z|x) || p(z)) = KL(q(z, x) || q(z) p(x))            index-code mutual information
                           + KL(q(z) || prod_d q(z_d))            total correlation (TC)
                           + sum_d KL(q(z_d) || p(z_d))           dimension-wise KL

where q(z) = (1/N) sum_n q(z|x_n) is the aggregate posterior over the N images of the data set.
beta-TCVAE weights only the total correlation by beta. The densities q(z) and q(z_d) are sums over
the whole data set; they are estimated from the minibatch itself, which holds z_i ~ q(z|x_i):

    q(z_i) ~= sum_j w_ij q(z_i | x_j)

- minibatch-weighted sampling ("mws"): w_ij = 1 / (N B) for a batch of B. What
  disentanglement_lib and Chen et al.'s code default to, but biased low: its expectation over
  minibatches is (q(z_i|x_i) + (B - 1) * mean of the other q(z_i|x_n)) / (N B), below q(z_i).
  The bias shows in the logged parts: with all posteriors alike, TC reads (D - 1) log N, not 0.
- minibatch-stratified sampling ("mss"): think of the data set as M = B - 1 strata of N / M
  images; x_i's batch holds x_i, one more image of x_i's stratum and one image of each other
  stratum. x_i counts for itself (1/N), the other image of its stratum for the rest of that
  stratum ((N - M) / (N M)) and every other image for its whole stratum (1/M). Unbiased for q(z_i).
  Here the partner of sample i is sample i + 1 (mod B). Chen et al.'s published code means the same
  layout but steps through the flattened matrix with stride B instead of B + 1, so the weights 1/N
  fill column 0 and the partner weights column 1 instead of the diagonal and the entries beside
  it: most samples weigh their own posterior by 1/M instead of 1/N. The matrix here is tested
  entry by entry.
"""

import math

import torch
from torch import Tensor

from vision_models.beta_vae import BetaVAE

ESTIMATORS = ("mws", "mss")
_LOG_2PI = math.log(2 * math.pi)


def gaussian_log_density(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; mean, exp(logvar)) elementwise (broadcasting)."""
    return -0.5 * (_LOG_2PI + logvar + (x - mean).pow(2) * torch.exp(-logvar))


def log_importance_weights(batch_size: int, dataset_size: int, estimator: str) -> Tensor:
    """(B, B) matrix of log w_ij, the weight of q(z_i | x_j) in the estimate of q(z_i) (module docstring)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
    if batch_size < 2:
        raise ValueError(
            f"batch_size must be >= 2 to estimate q(z) from the other samples of the batch, got {batch_size}"
        )
    if dataset_size < batch_size:
        raise ValueError(f"dataset_size (N = {dataset_size}) must be at least the batch size ({batch_size})")
    n = float(dataset_size)
    if estimator == "mws":
        return torch.full((batch_size, batch_size), -math.log(n * batch_size), dtype=torch.float64)
    m = float(batch_size - 1)  # strata, one per sample other than z_i's own
    log_weights = torch.full((batch_size, batch_size), -math.log(m), dtype=torch.float64)
    rows = torch.arange(batch_size)
    log_weights[rows, rows] = -math.log(n)
    log_weights[rows, (rows + 1) % batch_size] = math.log((n - m) / (n * m))
    return log_weights


def _log_aggregate_posterior(z: Tensor, mean: Tensor, logvar: Tensor, log_weights: Tensor) -> tuple[Tensor, Tensor]:
    """Estimates of log q(z_i) and of log prod_d q(z_i,d) for every sample of the batch: two (B,) tensors."""
    # log_q[i, j, d] = log q(z_i,d | x_j): every sample under every posterior of the batch
    log_q = gaussian_log_density(z[:, None, :], mean[None, :, :], logvar[None, :, :])
    log_qz = torch.logsumexp(log_weights + log_q.sum(2), dim=1)
    log_qz_marginals = torch.logsumexp(log_weights[:, :, None] + log_q, dim=1)  # (B, D)
    return log_qz, log_qz_marginals.sum(1)


def kl_decomposition(z: Tensor, mean: Tensor, logvar: Tensor, dataset_size: int, estimator: str) -> dict[str, Tensor]:
    """Batch estimates of the three parts of the KL term (module docstring), from z_i ~ q(z | x_i).

    The three add up to the batch mean of log q(z_i|x_i) - log p(z_i), a sampled estimate of the KL
    term, whichever estimator is used.
    """
    log_weights = log_importance_weights(len(z), dataset_size, estimator).to(z)
    log_qz, log_prod_qz = _log_aggregate_posterior(z, mean, logvar, log_weights)
    log_qz_given_x = gaussian_log_density(z, mean, logvar).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    return {
        "mutual_information": (log_qz_given_x - log_qz).mean(),
        "total_correlation": (log_qz - log_prod_qz).mean(),
        "dimension_wise_kl": (log_prod_qz - log_pz).mean(),
    }


class BetaTCVAE(BetaVAE):
    """BetaVAE's encoder, decoder and reconstruction; loss = reconstruction + KL + (beta - 1) * TC.

    That is Chen et al.'s objective with the mutual-information and dimension-wise terms at weight 1
    (reconstruction + MI + beta * TC + dimension-wise KL): MI + TC + dimension-wise KL is a sampled
    KL, and, as in disentanglement_lib, the closed-form KL stands in for it (same mean, less noise).
    `dataset_size` is N, the number of images the training minibatches are drawn from.
    """

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 32,
        beta: float = 6.0,
        *,
        dataset_size: int,
        estimator: str = "mws",
        reconstruction: str = "bernoulli",
    ):
        super().__init__(input_shape, latent_dim, beta, reconstruction)
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; choose one of {ESTIMATORS}")
        if dataset_size < 2:
            raise ValueError(f"dataset_size must be the number of training images (>= 2), got {dataset_size}")
        self.estimator = estimator
        self.dataset_size = int(dataset_size)

    def regularizer(
        self, mean: Tensor, logvar: Tensor, z: Tensor, kl: Tensor, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        parts = kl_decomposition(z, mean, logvar, self.dataset_size, self.estimator)
        penalty = kl + (self.beta - 1.0) * parts["total_correlation"]
        return penalty, {name: value.item() for name, value in parts.items()}
