"""beta-VAE_DAE (DARLA): a beta-VAE whose reconstruction error is measured in a frozen DAE's feature space."""

import torch
from torch import Tensor

from vision_models.base import squared_error
from vision_models.beta_vae import BetaVAE
from vision_models.dae import DAE_LAYERS, DenoisingAutoencoder


class BetaVAEDAE(BetaVAE):
    """loss = sum over features of (J(x_hat) - J(x))^2 (mean over batch) + beta * KL, x_hat = sigmoid(decode(z)).

    J is an already trained DenoisingAutoencoder read at `dae_layer`: a frozen pretrained part (see
    VisionModel.pretrained), so the optimiser never sees it and `state_dict()` leaves it out (the see stage
    saves it as dae.safetensors). J(x) is a fixed target (computed without autograd); J(x_hat) passes
    gradients to the decoder only.
    """

    pretrained = ("dae",)

    def __init__(
        self,
        dae: DenoisingAutoencoder,
        input_shape=(3, 64, 64),
        latent_dim: int = 32,
        beta: float = 1.0,
        dae_layer: str = "pre_activation",
    ):
        super().__init__(input_shape, latent_dim, beta)
        if dae_layer not in DAE_LAYERS:
            raise ValueError(f"unknown dae_layer {dae_layer!r}; choose one of {DAE_LAYERS}")
        if tuple(dae.input_shape) != self.input_shape:
            raise ValueError(f"DAE input_shape {tuple(dae.input_shape)} differs from the model's {self.input_shape}")
        self.dae_layer = dae_layer
        self.reconstruction = f"dae_{dae_layer}"
        self.dae = self.freeze(dae)

    def reconstruction_loss(self, logits: Tensor, x: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.dae.features(x, self.dae_layer)
        prediction = self.dae.features(torch.sigmoid(logits), self.dae_layer)
        return squared_error(prediction, target)
