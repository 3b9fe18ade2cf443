"""Annealed VAE (Burgess et al. 2018, "Understanding disentangling in beta-VAE"): controlled capacity increase.

Instead of weighting the KL term, the loss pins it to a target capacity C (in nats) that rises
linearly from 0 to `c_max` over `iteration_threshold` steps:

    loss = reconstruction + gamma * |KL(q(z|x) || N(0, I)) - C(step)|

Early on the bottleneck lets through only the factor that buys the most reconstruction; as C grows,
further factors are admitted one after another, which is what disentangles them. KL is the batch
mean of the per-image KL summed over latents, and the absolute value is taken of that mean, as in
disentanglement_lib.
"""

from torch import Tensor

from vision_models.beta_vae import BetaVAE


def capacity(step: int, c_max: float, iteration_threshold: int) -> float:
    """Target KL C(step) in nats: c_max * step / iteration_threshold, held at c_max afterwards."""
    return c_max * min(1.0, step / iteration_threshold)


class AnnealedVAE(BetaVAE):
    """BetaVAE's encoder, decoder and reconstruction; the KL term is replaced by gamma * |KL - C(step)|.

    Defaults are disentanglement_lib's: gamma 1000, c_max 25 nats reached after 100,000 steps.
    """

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 32,
        gamma: float = 1000.0,
        c_max: float = 25.0,
        iteration_threshold: int = 100_000,
        reconstruction: str = "bernoulli",
    ):
        super().__init__(input_shape, latent_dim, beta=1.0, reconstruction=reconstruction)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if c_max < 0:
            raise ValueError(f"c_max must be >= 0 (a capacity in nats), got {c_max}")
        if iteration_threshold < 1:
            raise ValueError(f"iteration_threshold must be a number of steps >= 1, got {iteration_threshold}")
        self.gamma = float(gamma)
        self.c_max = float(c_max)
        self.iteration_threshold = int(iteration_threshold)

    def capacity(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        return capacity(step, self.c_max, self.iteration_threshold)

    def regularizer(
        self, mean: Tensor, logvar: Tensor, z: Tensor, kl: Tensor, step: int
    ) -> tuple[Tensor, dict[str, float]]:
        target = self.capacity(step)
        capacity_gap = (kl - target).abs()
        return self.gamma * capacity_gap, {"capacity": target, "capacity_gap": capacity_gap.item()}
