"""InfoGAN (Chen et al. 2016): a GAN whose generator must keep its codes recoverable from the image.

The generator G maps (noise, optional categorical code, continuous codes) to image logits. The
discriminator network has a conv trunk shared by two heads: D (real or generated?) and Q, which
predicts the codes from an image: a Gaussian (mean, log-variance) per continuous code and logits
for the categorical one. Maximising the mutual information between codes and images is
maximising its variational lower bound E[log Q(c | G(z, c))] + H(c), i.e. minimising the
negative log-likelihood of the codes under Q (the "information" term, weighted by lambda).

As a vision model: `encode(x)` is Q's (mean, log-variance) of the continuous codes, so the policy
sees Q's mean; `latent_dim` is the number of continuous codes; `decode(c)` is the generator with
the noise at its mean (zero) and the categorical code at its first class, so traversals work.

Choices (the InfoGAN authors' code unless said otherwise):
- Codes and noise are Uniform(-1, 1), the categorical code uniform over its classes. Note the
  codes' range when reading traversals that sweep further.
- 10 continuous codes (the zoo's 10-latent disentanglement setting), 62 noise variables (the
  paper's MNIST setting), no categorical code by default (`categories=3` suits dSprites' shapes).
- lambda = 1 for both kinds of code, the authors' default weight of the information term.
- Q is part of the discriminator network and trained by its optimiser, as in the authors' code:
  the information term trains the trunk and Q (on detached generated images) and the generator
  (through the discriminator network with frozen weights). Adam with beta1 = 0.5 for both;
  learning rates 2e-4 (discriminator) and 1e-3 (generator, the training loop's lr).
- Non-saturating GAN loss on logits. Updates alternate as in the authors' code: the
  discriminator steps first, then the generator steps against the updated discriminator, on
  the same generated batch.
- Networks mirror the zoo's conv nets (vision_models/nets.py): G is a ConvDecoder; the trunk is
  a ConvEncoder with 256 outputs followed by a LeakyReLU(0.2), and Q has one hidden layer of 128.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision_models.base import VisionModel, call_with_frozen_weights
from vision_models.nets import ConvDecoder, ConvEncoder

_LOG_2PI = math.log(2 * math.pi)


def gaussian_nll(value: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """-log N(value; mean, exp(logvar)), summed over dimensions, mean over batch."""
    per_dim = 0.5 * (_LOG_2PI + logvar + (value - mean).pow(2) * torch.exp(-logvar))
    return per_dim.sum(1).mean()


class InfoGANDiscriminator(nn.Module):
    """Conv trunk shared by D (one real/fake logit) and Q (the codes' posterior parameters)."""

    def __init__(self, channels: int, continuous_codes: int, categories: int, hidden: int = 256, q_hidden: int = 128):
        super().__init__()
        self.continuous_codes, self.categories = continuous_codes, categories
        self.trunk = nn.Sequential(ConvEncoder(channels, hidden), nn.LeakyReLU(0.2))
        self.real_fake = nn.Linear(hidden, 1)
        self.q = nn.Sequential(
            nn.Linear(hidden, q_hidden), nn.LeakyReLU(0.2), nn.Linear(q_hidden, 2 * continuous_codes + categories)
        )

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(real/fake logit (N,), code mean (N, K), code log-variance (N, K), category logits (N, categories))."""
        features = self.trunk(images)
        mean, logvar, category_logits = self.q(features).split(
            [self.continuous_codes, self.continuous_codes, self.categories], dim=1
        )
        return self.real_fake(features).squeeze(1), mean, logvar, category_logits


class InfoGAN(VisionModel):
    """Generator, discriminator with a Q head; the representation is Q's mean of the continuous codes."""

    traversal_span = 1.0  # the continuous codes are Uniform(-1, 1)

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 10,  # continuous codes
        noise_dim: int = 62,
        categories: int = 0,  # classes of the one categorical code; 0: none
        info_weight: float = 1.0,  # lambda
        discriminator_lr: float = 2e-4,
    ):
        super().__init__(input_shape, latent_dim)
        for name, value, least in (
            ("latent_dim", self.latent_dim, 1),
            ("noise_dim", noise_dim, 0),
            ("categories", categories, 0),
        ):
            if value < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        if categories == 1:
            raise ValueError("categories must be 0 (no categorical code) or >= 2, got 1")
        if info_weight < 0 or discriminator_lr <= 0:
            raise ValueError(f"need info_weight >= 0 and discriminator_lr > 0, got {info_weight}, {discriminator_lr}")
        self.noise_dim, self.categories = int(noise_dim), int(categories)
        self.info_weight, self.discriminator_lr = float(info_weight), float(discriminator_lr)
        channels = self.input_shape[0]
        self.generator = ConvDecoder(self.noise_dim + self.categories + self.latent_dim, channels)
        self.discriminator = InfoGANDiscriminator(channels, self.latent_dim, self.categories)

    def sample_latents(self, n: int, device) -> tuple[Tensor, Tensor, Tensor]:
        """Generator inputs: noise (n, noise_dim), category indices (n,) and continuous codes (n, latent_dim)."""
        noise = torch.rand(n, self.noise_dim, device=device) * 2 - 1
        category = torch.randint(max(self.categories, 1), (n,), device=device)
        codes = torch.rand(n, self.latent_dim, device=device) * 2 - 1
        return noise, category, codes

    def generate(self, noise: Tensor, category: Tensor, codes: Tensor) -> Tensor:
        """Image logits (N, *input_shape) of the generator."""
        inputs = [noise, codes]
        if self.categories:
            inputs.insert(1, F.one_hot(category, self.categories).to(codes.dtype))
        return self.generator(torch.cat(inputs, dim=1))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _, mean, logvar, _ = self.discriminator(x)
        return mean, logvar

    def decode(self, z: Tensor) -> Tensor:
        n = len(z)
        noise = z.new_zeros(n, self.noise_dim)  # the mean of Uniform(-1, 1)
        category = torch.zeros(n, dtype=torch.long, device=z.device)
        return self.generate(noise, category, z)

    def information_loss(
        self, mean: Tensor, logvar: Tensor, category_logits: Tensor, codes: Tensor, category: Tensor
    ) -> Tensor:
        """-E[log Q(c | x)]: Gaussian NLL of the continuous codes plus cross-entropy of the category."""
        loss = gaussian_nll(codes, mean, logvar)
        if self.categories:
            loss = loss + F.cross_entropy(category_logits, category)
        return loss

    def discriminator_losses(
        self, batch: Tensor, fake: Tensor, codes: Tensor, category: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(GAN loss of D: real vs generated, information loss of Q) on detached generated images."""
        real_logit = self.discriminator(batch)[0]
        fake_logit, mean, logvar, category_logits = self.discriminator(fake.detach())
        gan = F.binary_cross_entropy_with_logits(
            real_logit, torch.ones_like(real_logit)
        ) + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))
        return gan, self.information_loss(mean, logvar, category_logits, codes, category)

    def generator_losses(self, fake: Tensor, codes: Tensor, category: Tensor) -> tuple[Tensor, Tensor]:
        """(non-saturating GAN loss of G, information loss) through the discriminator network, frozen."""
        fake_logit, mean, logvar, category_logits = call_with_frozen_weights(self.discriminator, fake)
        gan = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
        return gan, self.information_loss(mean, logvar, category_logits, codes, category)

    def _generated_batch(self, batch: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Generated images in [0, 1] as many as the batch, with their continuous codes and category."""
        noise, category, codes = self.sample_latents(len(batch), batch.device)
        return torch.sigmoid(self.generate(noise, category, codes)), codes, category

    def loss(self, batch: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        """Every term at the current weights, for logging; a GAN has no single loss to minimise.

        total = discriminator + generator + lambda * information: the sum of what the two
        optimisers minimise, the shared information term counted once.
        """
        fake, codes, category = self._generated_batch(batch)
        discriminator, information = self.discriminator_losses(batch, fake, codes, category)
        generator, _ = self.generator_losses(fake, codes, category)
        total = discriminator + generator + self.info_weight * information
        return total, {
            "discriminator": discriminator.item(),
            "generator": generator.item(),
            "information": information.item(),
            "total": total.item(),
        }

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=(0.5, 0.999)),
            "discriminator": torch.optim.Adam(
                self.discriminator.parameters(), lr=self.discriminator_lr, betas=(0.5, 0.999)
            ),
        }

    def training_step(self, batch: Tensor, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """The discriminator (with Q) steps, then the generator against it; a non-finite loss is not stepped.

        "information" is logged from the discriminator's pass; "total" takes the generator's
        objective from after the discriminator's step, so a non-finite one shows there.
        """
        fake, codes, category = self._generated_batch(batch)
        discriminator, information = self.discriminator_losses(batch, fake, codes, category)
        discriminator_total = discriminator + self.info_weight * information
        terms = {"discriminator": discriminator.item(), "information": information.item()}
        if not math.isfinite(discriminator_total.item()):
            return {**terms, "total": discriminator_total.item()}
        _step(optimizers["discriminator"], discriminator_total)

        generator, generator_information = self.generator_losses(fake, codes, category)
        generator_total = generator + self.info_weight * generator_information
        if math.isfinite(generator_total.item()):
            _step(optimizers["generator"], generator_total)
        return {**terms, "generator": generator.item(), "total": discriminator.item() + generator_total.item()}


def _step(optimizer: torch.optim.Optimizer, loss: Tensor) -> None:
    """One gradient step of one player on its own loss."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
