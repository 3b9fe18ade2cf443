"""Conv nets shared by the vision models (DARLA appendix; disentanglement_lib's conv encoder/decoder).

Encoder: 4 convs (32-32-64-64, kernel 4, stride 2, padding 1, ReLU) take 64x64 to 4x4, then FC 256 ReLU,
then a linear head. Decoder mirrors it and returns logits: the loss applies the sigmoid, which keeps
binary cross-entropy numerically stable.
"""

from torch import nn

IMAGE_SIZE = 64  # four stride-2 convs take 64 -> 4; the FC sizes below depend on it
_FEATURE_SHAPE = (64, 4, 4)


def check_input_shape(input_shape) -> tuple[int, int, int]:
    """Return input_shape as (channels, height, width), or raise if the conv stack cannot take it."""
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (channels, height, width), got {shape}")
    channels, height, width = shape
    if channels < 1 or (height, width) != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"input_shape {shape} is not supported: the conv stack needs channels-first "
            f"(C, {IMAGE_SIZE}, {IMAGE_SIZE}) images with C >= 1; resize frames to {IMAGE_SIZE}x{IMAGE_SIZE}"
        )
    return shape


class ConvEncoder(nn.Sequential):
    """(N, C, 64, 64) images -> (N, out_features)."""

    def __init__(self, in_channels: int, out_features: int, hidden: int = 256):
        super().__init__(
            nn.Conv2d(in_channels, 32, 4, stride=2, padding=1),
            nn.ReLU(),  # 32x32
            nn.Conv2d(32, 32, 4, stride=2, padding=1),
            nn.ReLU(),  # 16x16
            nn.Conv2d(32, 64, 4, stride=2, padding=1),
            nn.ReLU(),  # 8x8
            nn.Conv2d(64, 64, 4, stride=2, padding=1),
            nn.ReLU(),  # 4x4
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, out_features),
        )


class ConvDecoder(nn.Sequential):
    """(N, latent_dim) codes -> (N, C, 64, 64) image logits."""

    def __init__(self, latent_dim: int, out_channels: int, hidden: int = 256):
        super().__init__(
            nn.Linear(latent_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 64 * 4 * 4),
            nn.ReLU(),
            nn.Unflatten(1, _FEATURE_SHAPE),
            nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1),
            nn.ReLU(),  # 8x8
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1),
            nn.ReLU(),  # 16x16
            nn.ConvTranspose2d(32, 32, 4, stride=2, padding=1),
            nn.ReLU(),  # 32x32
            nn.ConvTranspose2d(32, out_channels, 4, stride=2, padding=1),  # 64x64 logits
        )
