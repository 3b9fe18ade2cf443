"""DC-IGN (Kulkarni et al. 2015, "Deep Convolutional Inverse Graphics Network").

A VAE whose latents are assigned to ground-truth factors in advance, trained on factor sweeps:
mini-batches in which one factor varies and every other factor is fixed (darla's FactorBatches with
kind "factor_sweeps" yields them as `(images, factor)`). On such a batch:

- forward: the latents of every factor that does not vary ("inactive") are clamped to their batch
  mean before the decoder sees them, so only the varying factor's latents can explain what changes
  across the batch;
- backward: the reconstruction gradient reaching a clamped latent is thrown away and replaced by the
  paper's invariance gradient, the latent's deviation from its batch mean (scaled, see
  `clamp_inactive_latents`), which pulls the encoder towards giving the same value to every image of
  the batch; the varying factor's latents get the ordinary gradient.

Latent layout (the mapping from factors to latents), with L = latents_per_factor:

    factor k (k = 0 .. num_factors - 1)  ->  latents k*L .. k*L + L - 1
    latents num_factors*L .. latent_dim - 1  ->  "intrinsic": clamped in every sweep

Factor k is column k of the factor dataset (`factor_sizes[k]`), so `num_factors` must be the
dataset's factor count. Intrinsic latents have no factor of their own: a sweep changes only named
factors, so they are always inactive and receive only the invariance gradient; the KL term then
takes them to the prior (unused latents, as in any VAE). They are spare capacity for data whose
factors do not describe everything (the paper's "intrinsic properties" of a face).

At inference nothing is clamped: `representation` is the encoder mean, as for every model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vision_models.base import gaussian_kl, reparameterize
from vision_models.beta_vae import BetaVAE


class _ClampToBatchMean(torch.autograd.Function):
    """Forward: inactive columns -> their batch mean. Backward: invariance gradient there (see below)."""

    @staticmethod
    def forward(ctx, latents: Tensor, active: Tensor, invariance_scale: float) -> Tensor:
        batch_mean = latents.mean(0, keepdim=True)
        # The invariance gradient is the deviation from the batch mean; keep it for backward.
        ctx.save_for_backward(latents - batch_mean, active)
        ctx.scale = invariance_scale / latents.shape[0]
        return torch.where(active, latents, batch_mean)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        deviation, active = ctx.saved_tensors
        return torch.where(active, grad_output, ctx.scale * deviation), None, None


def clamp_inactive_latents(latents: Tensor, active: Tensor, invariance_scale: float = 0.01) -> Tensor:
    """Clamp the inactive columns of (N, D) latents to their batch mean, with DC-IGN's invariance gradient.

    `active` is a bool mask (D,): those columns pass through unchanged, forward and backward.
    For an inactive column j the output is mean_i latents[i, j] for every row, and the gradient that
    flows back to latents[i, j] is not the true one (which would spread the incoming gradient over the
    batch) but

        invariance_scale * (latents[i, j] - mean_n latents[n, j]) / N.

    Scaling: the paper scales the deviation so that this "regularizing force" stays much smaller than
    the reconstruction signal, and reports that a factor of 1/100 works (`invariance_scale` 0.01).
    The authors' code sums the loss over the batch; darla's losses average over it, which divides the
    reconstruction gradient of each image by N, so the invariance gradient is divided by N too and the
    ratio between the two stays the paper's. Divided by N, it is exactly the gradient of the penalty
    invariance_scale / 2 * mean_i ||latents[i, inactive] - batch mean||^2, the within-batch spread the
    paper wants to shrink.
    """
    if latents.dim() != 2 or active.shape != latents.shape[1:] or active.dtype != torch.bool:
        raise ValueError(
            f"expected latents (N, D) and a bool mask active (D,), got {tuple(latents.shape)} "
            f"and {active.dtype} {tuple(active.shape)}"
        )
    return _ClampToBatchMean.apply(latents, active, float(invariance_scale))


class DCIGN(BetaVAE):
    """DC-IGN: a VAE trained on factor sweeps with clamped inactive latents and the invariance gradient.

    loss on a sweep batch (images, factor) =
        reconstruction of the images from z ~ N(clamped mean, exp(clamped logvar))
        + beta * KL(q(z|x) || N(0, I)) of each image's own (unclamped) posterior,
    both averaged over the batch. The clamp acts on the posterior mean and log-variance (as the
    authors' code clamps both encoder outputs), so the decoder sees one posterior for the inactive
    latents across the batch; the sampling noise stays per image. The KL is the per-image term of the
    ELBO and keeps its ordinary gradient for every latent; the invariance gradient replaces only the
    reconstruction gradient at the clamped latents (the paper's training steps 6-7).
    The paper's model is a plain VAE, hence beta = 1 by default.
    """

    batches = "factor_sweeps"

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 32,
        num_factors: int = 6,
        latents_per_factor: int = 1,
        invariance_scale: float = 0.01,
        beta: float = 1.0,
        reconstruction: str = "bernoulli",
    ):
        super().__init__(input_shape, latent_dim, beta, reconstruction)
        if int(num_factors) < 1 or int(latents_per_factor) < 1:
            raise ValueError(
                f"num_factors and latents_per_factor must be >= 1, got {num_factors} and {latents_per_factor}"
            )
        if int(num_factors) * int(latents_per_factor) > self.latent_dim:
            raise ValueError(
                f"num_factors * latents_per_factor = {num_factors} * {latents_per_factor} latents do not fit "
                f"in latent_dim {self.latent_dim}"
            )
        if float(invariance_scale) < 0:
            raise ValueError(f"invariance_scale must be >= 0, got {invariance_scale}")
        self.num_factors = int(num_factors)
        self.latents_per_factor = int(latents_per_factor)
        self.invariance_scale = float(invariance_scale)

    def factor_latents(self, factor: int) -> range:
        """Indices of the latents assigned to ground-truth factor `factor` (column of the factor dataset)."""
        if not 0 <= factor < self.num_factors:
            raise ValueError(
                f"factor must be in [0, {self.num_factors}) (num_factors), got {factor}; "
                f"set num_factors to the factor dataset's factor count"
            )
        start = factor * self.latents_per_factor
        return range(start, start + self.latents_per_factor)

    @property
    def intrinsic_latents(self) -> range:
        """Latents assigned to no factor: clamped in every sweep."""
        return range(self.num_factors * self.latents_per_factor, self.latent_dim)

    def active_latents(self, factor: int, device=None) -> Tensor:
        """Bool mask (latent_dim,): True for the latents of the factor that varies in the batch."""
        active = torch.zeros(self.latent_dim, dtype=torch.bool, device=device)
        latents = self.factor_latents(factor)
        active[latents.start : latents.stop] = True
        return active

    def loss(self, batch: tuple[Tensor, int], step: int) -> tuple[Tensor, dict[str, float]]:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and torch.is_tensor(batch[0])):
            raise ValueError(
                "DCIGN.loss expects a factor sweep (images, factor) from "
                "FactorBatches(dataset, 'factor_sweeps'); got "
                f"{type(batch).__name__}: DC-IGN cannot train on frames without ground-truth factors"
            )
        images, factor = batch
        active = self.active_latents(int(factor), images.device)
        mean, logvar = self.encode(images)
        clamped_mean = clamp_inactive_latents(mean, active, self.invariance_scale)
        clamped_logvar = clamp_inactive_latents(logvar, active, self.invariance_scale)
        logits = self.decode(reparameterize(clamped_mean, clamped_logvar))
        reconstruction = self.reconstruction_loss(logits, images)
        kl = gaussian_kl(mean, logvar).sum(1).mean()
        total = reconstruction + self.beta * kl
        # How far the encoder is from invariance: the within-batch variance of the inactive posterior
        # means, summed over latents (what the invariance gradient shrinks; not part of `total`).
        inactive_spread = mean.detach()[:, ~active].var(0, unbiased=False).sum()
        return total, {
            "reconstruction": reconstruction.item(),
            "kl": kl.item(),
            "inactive_spread": inactive_spread.item(),
            "total": total.item(),
        }
