"""beta-VAE (Higgins et al. 2017): a VAE whose KL term is weighted by beta; beta = 1 is the plain VAE."""

import torch
from torch import Tensor

from vision_models.base import (
    VisionModel,
    bernoulli_reconstruction,
    gaussian_kl,
    reparameterize,
    squared_error,
)
from vision_models.nets import ConvDecoder, ConvEncoder

RECONSTRUCTIONS = ("bernoulli", "gaussian")


class BetaVAE(VisionModel):
    """Gaussian encoder, conv decoder; loss = reconstruction + beta * KL(q(z|x) || N(0, I)).

    reconstruction="bernoulli": binary cross-entropy on logits (disentanglement_lib's default);
    "gaussian": squared error of sigmoid(logits) to the image. Both sum over pixels, mean over batch.
    Subclasses change the reconstruction term by overriding `reconstruction_loss`, and the
    regulariser by overriding `regularizer`.
    """

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 32,
        beta: float = 1.0,
        reconstruction: str = "bernoulli",
    ):
        super().__init__(input_shape, latent_dim)
        if reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"unknown reconstruction {reconstruction!r}; choose one of {RECONSTRUCTIONS}")
        self.beta = float(beta)
        self.reconstruction = reconstruction
        channels = self.input_shape[0]
        self.encoder = ConvEncoder(channels, 2 * self.latent_dim)  # mean and log-variance
        self.decoder = ConvDecoder(self.latent_dim, channels)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def reconstruction_loss(self, logits: Tensor, x: Tensor) -> Tensor:
        if self.reconstruction == "bernoulli":
            return bernoulli_reconstruction(logits, x)
        return squared_error(torch.sigmoid(logits), x)

    def loss(self, batch: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        mean, logvar = self.encode(batch)
        z = reparameterize(mean, logvar)
        reconstruction = self.reconstruction_loss(self.decode(z), batch)
        kl = gaussian_kl(mean, logvar).sum(1).mean()
        penalty, terms = self.regularizer(mean, logvar, z, kl, step)
        total = reconstruction + penalty
        return total, {"reconstruction": reconstruction.item(), "kl": kl.item(), **terms, "total": total.item()}

    def regularizer(
        self, mean: Tensor, logvar: Tensor, z: Tensor, kl: Tensor, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        """What the model adds to the reconstruction term, and its extra terms for logging.

        β-VAE: β·KL. The variants of the zoo (annealed capacity, β-TCVAE, DIP-VAE) override only
        this, from the posterior (mean, logvar), its sample z, the batch-mean KL and the step.
        """
        return self.beta * kl, {}
