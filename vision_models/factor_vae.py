"""FactorVAE (Kim & Mnih 2018): a VAE that penalises the total correlation of its latents.

The total correlation TC(z) = KL(q(z) || prod_j q(z_j)) has no closed form, so a discriminator
learns to tell samples of q(z) from samples of prod_j q(z_j), and its logit difference is the
density-ratio estimate of TC. Two players, two optimisers, and no gradient between them:

- the VAE minimises reconstruction + KL + gamma * TC, reading the discriminator with its weights
  frozen (gradients reach z, never the discriminator);
- the discriminator minimises its cross-entropy on detached latents (nothing reaches the VAE).

Which latents the discriminator sees follows disentanglement_lib rather than the paper's
Algorithm 1: the paper permutes the codes of a second batch, disentanglement_lib permutes the
codes of the batch the VAE was just trained on. One batch keeps the VAE's batch size at 64
and costs one encoder pass per step; both players step from that one forward pass.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision_models.base import call_with_frozen_weights, gaussian_kl, reparameterize
from vision_models.beta_vae import BetaVAE

# Discriminator classes: 0 = a sample of q(z) (codes as encoded), 1 = a sample of prod_j q(z_j).
JOINT, PRODUCT_OF_MARGINALS = 0, 1


def permute_dims(z: Tensor) -> Tensor:
    """Shuffle every latent column separately across the batch: samples of prod_j q(z_j).

    Each column keeps its values (its marginal) while the rows no longer belong together.
    """
    order = torch.rand(z.shape, device=z.device).argsort(dim=0)
    return z.gather(0, order)


def total_correlation_estimate(logits: Tensor) -> Tensor:
    """Batch mean of log D(z) / (1 - D(z)) = logit(joint) - logit(product of marginals)."""
    return (logits[:, JOINT] - logits[:, PRODUCT_OF_MARGINALS]).mean()


def tc_discriminator(latent_dim: int, hidden: int = 1000, layers: int = 6) -> nn.Sequential:
    """MLP of FactorVAE (disentanglement_lib): 6 x 1000 units, LeakyReLU(0.2), two logits."""
    blocks: list[nn.Module] = []
    width = latent_dim
    for _ in range(layers):
        blocks += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
        width = hidden
    return nn.Sequential(*blocks, nn.Linear(width, 2))


class FactorVAE(BetaVAE):
    """Gaussian encoder, conv decoder, TC discriminator; VAE loss = reconstruction + KL + gamma * TC.

    The discriminator is a submodule, so it is checkpointed with the model; the policy still sees
    only the encoder mean (`representation`). Optimisers: "vae" (encoder and decoder, Adam with
    betas 0.9/0.999 at the training loop's lr) and "discriminator" (Adam, betas 0.5/0.9 at
    `discriminator_lr`), both as in disentanglement_lib.
    """

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 32,
        gamma: float = 35.0,  # disentanglement_lib's dSprites value
        reconstruction: str = "bernoulli",
        discriminator_lr: float = 1e-4,
    ):
        super().__init__(input_shape, latent_dim, beta=1.0, reconstruction=reconstruction)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if discriminator_lr <= 0:
            raise ValueError(f"discriminator_lr must be > 0, got {discriminator_lr}")
        self.gamma = float(gamma)
        self.discriminator_lr = float(discriminator_lr)
        self.discriminator = tc_discriminator(self.latent_dim)

    def discriminator_loss(self, z: Tensor) -> Tensor:
        """Cross-entropy of telling codes (class JOINT) from their column-wise permutation, halves weighted 1/2."""
        joint = self.discriminator(z)
        marginals = self.discriminator(permute_dims(z))
        return 0.5 * (
            F.cross_entropy(joint, torch.full((len(z),), JOINT, device=z.device))
            + F.cross_entropy(marginals, torch.full((len(z),), PRODUCT_OF_MARGINALS, device=z.device))
        )

    def _losses(self, batch: Tensor) -> tuple[Tensor, Tensor, dict[str, float]]:
        """The VAE's loss, the discriminator's loss (on detached codes) and the logged terms."""
        mean, logvar = self.encode(batch)
        z = reparameterize(mean, logvar)
        reconstruction = self.reconstruction_loss(self.decode(z), batch)
        kl = gaussian_kl(mean, logvar).sum(1).mean()
        tc = total_correlation_estimate(call_with_frozen_weights(self.discriminator, z))
        vae_loss = reconstruction + kl + self.gamma * tc
        discriminator_loss = self.discriminator_loss(z.detach())
        terms = {
            "reconstruction": reconstruction.item(),
            "kl": kl.item(),
            "tc": tc.item(),
            "discriminator": discriminator_loss.item(),
            "total": vae_loss.item(),
        }
        return vae_loss, discriminator_loss, terms

    def loss(self, batch: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        """The VAE's loss (gradients reach the encoder and decoder only) and every term for logging."""
        vae_loss, _, terms = self._losses(batch)
        return vae_loss, terms

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        vae_parameters = [*self.encoder.parameters(), *self.decoder.parameters()]
        return {
            "vae": torch.optim.Adam(vae_parameters, lr=lr, betas=(0.9, 0.999)),
            "discriminator": torch.optim.Adam(
                self.discriminator.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.9)
            ),
        }

    def training_step(self, batch: Tensor, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """Both players step from one forward pass; nothing is updated when a term is not finite."""
        vae_loss, discriminator_loss, terms = self._losses(batch)
        if all(math.isfinite(v) for v in terms.values()):
            for loss, optimizer in ((vae_loss, optimizers["vae"]), (discriminator_loss, optimizers["discriminator"])):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return terms
