"""The interface every vision model honours, and the loss helpers several models share."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision_models.nets import check_input_shape


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent dimension, closed form: (N, D)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


def reparameterize(mean: Tensor, logvar: Tensor) -> Tensor:
    """Sample z ~ N(mean, exp(logvar)) so that gradients flow to mean and logvar."""
    return mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)


def bernoulli_reconstruction(logits: Tensor, target: Tensor) -> Tensor:
    """Bernoulli negative log-likelihood of target under logits: summed over pixels, mean over batch.

    The disentanglement_lib default; works on logits so it never takes log(0).
    """
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return per_pixel.flatten(1).sum(1).mean()


def squared_error(prediction: Tensor, target: Tensor) -> Tensor:
    """Squared L2 distance summed over features, mean over batch."""
    return (prediction - target).pow(2).flatten(1).sum(1).mean()


class VisionModel(nn.Module):
    """Base class of the zoo. Images are float tensors in [0, 1], shape (N, *input_shape).

    Subclasses set `latent_dim` and implement `encode`, `decode` and `loss`; the rest follows.
    """

    latent_dim: int
    input_shape: tuple[int, int, int]

    def __init__(self, input_shape=(3, 64, 64), latent_dim: int = 32):
        super().__init__()
        self.input_shape = check_input_shape(input_shape)
        self.latent_dim = int(latent_dim)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(mean, logvar) of q(z|x); deterministic models return (code, None)."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Image logits (N, *input_shape); apply a sigmoid for pixel values."""
        raise NotImplementedError

    def loss(self, batch: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss to minimise and its terms as floats (for logging). `step` feeds schedules."""
        raise NotImplementedError

    @torch.no_grad()
    def representation(self, x: Tensor) -> Tensor:
        """What the RL policy sees: the encoder mean (call in eval mode; the model is frozen)."""
        return self.encode(x)[0]

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """Pixel reconstruction in [0, 1] from the encoder mean (no sampling), for figures."""
        return torch.sigmoid(self.decode(self.encode(x)[0]))

    @torch.no_grad()
    def kl_per_dim(self, x: Tensor) -> Tensor:
        """(latent_dim,) score of how much each latent is used, to sort latent traversals.

        Stochastic models: the batch mean of KL(q(z_i|x) || N(0, 1)). Deterministic models have no
        posterior, so the variance of each code dimension over the batch stands in for it.
        """
        mean, logvar = self.encode(x)
        if logvar is None:
            return mean.var(0, unbiased=False)
        return gaussian_kl(mean, logvar).mean(0)
