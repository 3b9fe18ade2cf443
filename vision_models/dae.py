"""Denoising autoencoder: DARLA trains it first, then beta-VAE_DAE measures reconstructions in its features."""

import math

import torch
from torch import Tensor

from vision_models.base import VisionModel, squared_error
from vision_models.nets import ConvDecoder, ConvEncoder

DAE_LAYERS = ("pre_activation", "bottleneck")


def _sample_spans(n: int, length: int, min_frac: float, max_frac: float, generator, device) -> tuple[Tensor, Tensor]:
    """Per image, a start and an integer size with min_frac <= size / length <= max_frac."""
    lo = max(1, math.ceil(min_frac * length - 1e-9))
    hi = max(lo, math.floor(max_frac * length + 1e-9))
    size = lo + (torch.rand(n, generator=generator, device=device) * (hi - lo + 1)).long().clamp(max=hi - lo)
    start = (torch.rand(n, generator=generator, device=device) * (length - size + 1)).long().clamp(max=length - size)
    return start, size


def mask_rectangle(
    x: Tensor,
    generator: torch.Generator | None = None,
    min_frac: float = 0.1,
    max_frac: float = 0.5,
    return_mask: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """Masking noise of DARLA's DAE: zero one random axis-aligned rectangle in each image of (N, C, H, W).

    The rectangle's height and width are each a uniform fraction in [min_frac, max_frac] of the image's.
    Coordinates are drawn on the generator's device (the batch's device without one), so a CPU generator
    gives the same rectangles wherever the batch lives. With return_mask, also returns the (N, 1, H, W)
    bool mask that is True inside the rectangle.
    """
    if not 0.0 < min_frac <= max_frac <= 1.0:
        raise ValueError(f"need 0 < min_frac <= max_frac <= 1, got {min_frac}, {max_frac}")
    n, _, height, width = x.shape
    device = generator.device if generator is not None else x.device
    top, h = (t.to(x.device) for t in _sample_spans(n, height, min_frac, max_frac, generator, device))
    left, w = (t.to(x.device) for t in _sample_spans(n, width, min_frac, max_frac, generator, device))
    rows = torch.arange(height, device=x.device)
    cols = torch.arange(width, device=x.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (N, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)  # (N, 1, H, W), broadcasts over C
    masked = x.masked_fill(mask, 0.0)
    return (masked, mask) if return_mask else masked


class DenoisingAutoencoder(VisionModel):
    """Deterministic conv autoencoder trained to restore frames with a rectangle masked out.

    Loss: squared error between sigmoid(decoder logits) of the masked frame and the clean frame,
    summed over pixels, mean over batch. As a representation for RL its bottleneck code is used
    (`encode` returns (code, None)); as a feature map J for beta-VAE_DAE see `features`.
    """

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 100,  # bottleneck width; DARLA's appendix: ~100-128
        mask_min_frac: float = 0.1,
        mask_max_frac: float = 0.5,
    ):
        super().__init__(input_shape, latent_dim)
        self.mask_min_frac = mask_min_frac
        self.mask_max_frac = mask_max_frac
        channels = self.input_shape[0]
        self.encoder = ConvEncoder(channels, self.latent_dim)  # linear bottleneck: no activation on the code
        self.decoder = ConvDecoder(self.latent_dim, channels)

    def encode(self, x: Tensor) -> tuple[Tensor, None]:
        return self.encoder(x), None

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def loss(self, batch: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        noisy = mask_rectangle(batch, min_frac=self.mask_min_frac, max_frac=self.mask_max_frac)
        restored = torch.sigmoid(self.decode(self.encode(noisy)[0]))
        total = squared_error(restored, batch)
        return total, {"reconstruction": total.item(), "total": total.item()}

    def features(self, x: Tensor, layer: str = "pre_activation") -> Tensor:
        """J(x) for beta-VAE_DAE, flattened to (N, features), from the clean (unmasked) input.

        "pre_activation" (default): the DAE's output before its last non-linearity, i.e. the decoder
        logits; "bottleneck": the code. DARLA leaves the layer ambiguous, so both are offered.
        """
        code = self.encode(x)[0]
        if layer == "bottleneck":
            return code
        if layer == "pre_activation":
            return self.decode(code).flatten(1)
        raise ValueError(f"unknown DAE layer {layer!r}; choose one of {DAE_LAYERS}")
