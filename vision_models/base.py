"""The interface every vision model honours, and the loss helpers several models share."""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

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


def call_with_frozen_weights(module: nn.Module, *inputs: Tensor) -> Tensor:
    """``module(*inputs)`` with its parameters as constants: gradients reach the inputs only.

    For a loss that reads the other player's network (adversarial training) without training it
    and without leaving gradients in its ``.grad``.
    """
    constants = {name: p.detach() for name, p in module.named_parameters()}
    return functional_call(module, constants, inputs)


def _without_pretrained(model, state_dict, prefix, local_metadata) -> None:
    """The model's state_dict leaves its frozen parts out (each is saved in its own file)."""
    for key in [k for k in state_dict if any(k.startswith(f"{prefix}{name}.") for name in model.pretrained)]:
        del state_dict[key]


def _keep_pretrained(model, state_dict, prefix, *_) -> None:
    """Loading a state dict (which has no frozen parts) leaves each frozen part's weights as they are."""
    for name in model.pretrained:
        for key, value in getattr(model, name).state_dict(prefix=f"{prefix}{name}.").items():
            state_dict.setdefault(key, value)


class VisionModel(nn.Module):
    """Base class of the zoo. Images are float tensors in [0, 1], shape (N, *input_shape).

    Subclasses set `latent_dim` and implement `encode`, `decode` and `loss`; the rest follows.
    Models with more than one optimiser (FactorVAE, InfoGAN) override `configure_optimizers` and
    `training_step`; the shared training loop (darla/vision_training.py) calls only these two.

    `batches` says what the training loop feeds `loss` / `training_step`:
    - "images": a float tensor (N, *input_shape) of frames drawn at random;
    - "factor_sweeps": a tuple (images, factor) where every image shares all ground-truth factors
      but `factor` (an int), which varies across the batch (DC-IGN). Needs a factor dataset;
    - "transitions": a dict {obs, action, next_obs, mu} of transitions (s, a, s') that the model's own
      behaviour collects in the env's vision domains while it trains (ICF; mu is the probability of
      the action under that behaviour). Such a model learns by acting: it implements
      `behaviour(frames, epsilon, generator)` -> (actions, their probabilities), and
      `acting_report(transitions)` -> what it measures of its trained behaviour (metrics.json["acting"]).
    """

    latent_dim: int
    input_shape: tuple[int, int, int]
    batches: str = "images"
    # Submodules trained before the model and frozen while it trains (beta_vae_dae's DAE J). The see
    # stage builds and trains each from the config group of the same name (configs/<name>/), saves it
    # as <name>.safetensors and hands it to the constructor under that name. A frozen part has no
    # gradients (so no optimiser sees it), stays in eval mode, and is left out of the model's own
    # state_dict (its weights live in their own file).
    pretrained: tuple[str, ...] = ()
    can_decode: bool = True  # False for encoder-only models (random_cnn): no reconstructions or traversals
    traversal_span: float = 2.5  # latent traversals sweep the mean code ± this (prior std units for N(0, 1))

    def __init__(self, input_shape=(3, 64, 64), latent_dim: int = 32):
        super().__init__()
        self.input_shape = check_input_shape(input_shape)
        self.latent_dim = int(latent_dim)
        self.register_state_dict_post_hook(_without_pretrained)
        self.register_load_state_dict_pre_hook(_keep_pretrained)

    def freeze(self, part: nn.Module) -> nn.Module:
        """A pretrained part as it must stay: no gradients, eval mode."""
        return part.eval().requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for name in self.pretrained:
            getattr(self, name).eval()
        return self

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(mean, logvar) of q(z|x); deterministic models return (code, None)."""
        raise NotImplementedError

    def decode(self, z: Tensor) -> Tensor:
        """Image logits (N, *input_shape); apply a sigmoid for pixel values."""
        raise NotImplementedError

    def loss(self, batch: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss to minimise and its terms as floats (for logging). `step` feeds schedules."""
        raise NotImplementedError

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """The optimisers `training_step` uses, by name (checkpointed under these names)."""
        return {"model": torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=lr)}

    def training_step(self, batch, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """One update; returns the logged terms, "total" among them.

        A non-finite loss is returned without updating, so the caller can stop with the weights
        of the last good step.
        """
        total, terms = self.loss(batch, step)
        terms = {**terms, "total": total.item()}
        if math.isfinite(terms["total"]):
            optimizer = optimizers["model"]
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        return terms

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
