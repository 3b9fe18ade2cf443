"""The vision model zoo: models that turn (N, C, 64, 64) frames in [0, 1] into latents for the policy.

Every model subclasses `VisionModel` (see base.py for the interface). Adding a model takes one file
here (the class) and one YAML in configs/vision_model/ whose `model._target_` points at it.
"""

from vision_models.base import VisionModel
from vision_models.beta_vae import BetaVAE
from vision_models.beta_vae_dae import BetaVAEDAE
from vision_models.dae import DenoisingAutoencoder, mask_rectangle

__all__ = ["VisionModel", "BetaVAE", "BetaVAEDAE", "DenoisingAutoencoder", "mask_rectangle"]
