"""DIP-VAE (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts from Unlabeled Observations").

A VAE plus a penalty that pushes the covariance of the aggregate posterior towards the identity,
so that its dimensions are decorrelated and of unit scale (disentangled inferred prior):

    penalty = lambda_od * sum_{i != j} Cov_ij^2 + lambda_d * sum_i (Cov_ii - 1)^2

- DIP-VAE-I penalises the covariance of the encoder mean over the data, Cov[mu(x)];
- DIP-VAE-II the covariance of z itself, Cov[z] = E[diag(sigma^2(x))] + Cov[mu(x)]
  (law of total covariance over the mixture of the posteriors).

Covariances are taken over the minibatch, normalised by the batch size, as in disentanglement_lib.
"""

import torch
from torch import Tensor

from vision_models.beta_vae import BetaVAE

DIP_TYPES = ("i", "ii")
# lambda_d = factor * lambda_od when lambda_d is not given (disentanglement_lib's unsupervised study)
LAMBDA_D_FACTOR = {"i": 10.0, "ii": 1.0}


def batch_covariance(x: Tensor) -> Tensor:
    """(D, D) covariance of the rows of x (B, D), normalised by B."""
    centred = x - x.mean(0)
    return centred.T @ centred / len(x)


def dip_covariance(mean: Tensor, logvar: Tensor, dip_type: str) -> Tensor:
    """The covariance DIP-VAE regularises: Cov[mu] (type "i") or E[diag(sigma^2)] + Cov[mu] (type "ii")."""
    if dip_type == "i":
        return batch_covariance(mean)
    return torch.diag(logvar.exp().mean(0)) + batch_covariance(mean)


def covariance_penalties(covariance: Tensor) -> tuple[Tensor, Tensor]:
    """(sum of squared off-diagonal entries, sum of squared deviations of the diagonal from 1)."""
    diagonal = torch.diagonal(covariance)
    off_diagonal = (covariance - torch.diag(diagonal)).pow(2).sum()
    return off_diagonal, (diagonal - 1.0).pow(2).sum()


class DIPVAE(BetaVAE):
    """BetaVAE's encoder, decoder and reconstruction; loss = reconstruction + KL + DIP penalty.

    lambda_d=None takes disentanglement_lib's choice for the type: 10 * lambda_od for DIP-VAE-I,
    lambda_od for DIP-VAE-II.
    """

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 32,
        dip_type: str = "i",
        lambda_od: float = 10.0,
        lambda_d: float | None = None,
        reconstruction: str = "bernoulli",
    ):
        super().__init__(input_shape, latent_dim, beta=1.0, reconstruction=reconstruction)
        if dip_type not in DIP_TYPES:
            raise ValueError(f"unknown dip_type {dip_type!r}; choose one of {DIP_TYPES}")
        if lambda_od < 0:
            raise ValueError(f"lambda_od must be >= 0, got {lambda_od}")
        if lambda_d is None:
            lambda_d = LAMBDA_D_FACTOR[dip_type] * lambda_od
        if lambda_d < 0:
            raise ValueError(f"lambda_d must be >= 0, got {lambda_d}")
        self.dip_type = dip_type
        self.lambda_od = float(lambda_od)
        self.lambda_d = float(lambda_d)

    def regularizer(
        self, mean: Tensor, logvar: Tensor, z: Tensor, kl: Tensor, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        off_diagonal, diagonal = covariance_penalties(dip_covariance(mean, logvar, self.dip_type))
        penalty = kl + self.lambda_od * off_diagonal + self.lambda_d * diagonal
        return penalty, {"covariance_off_diagonal": off_diagonal.item(), "covariance_diagonal": diagonal.item()}
