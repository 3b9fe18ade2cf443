"""DisBM (Reed, Sohn, Zhang & Lee, ICML 2014, "Learning to Disentangle Factors of Variation with
Manifold Interaction"): a higher-order Boltzmann machine whose hidden groups interact multiplicatively.

Energy (Gaussian visible units v with fixed standard deviation sigma, binary hidden groups h_1..h_G;
v is a frame less a fixed centre, each channel's mean over the first training batch: see `centre`):

    E(v, h) = sum_i (v_i - b_i)^2 / (2 sigma^2)
              - sum_{a<b} sum_f (v/sigma . W_f) (h_a . U_{a,f}) (h_b . U_{b,f})     three-way, factored
              - sum_g (v/sigma)^T P_g h_g  -  sum_g c_g^T h_g                         pairwise and biases

With two groups (G = 2, the paper's h and m) the higher-order term is exactly the paper's
sum_f (v^T W_f)(m^T P_f)(h^T Q_f). With more groups every pair of groups interacts through the
visible layer with the same visible filters W; writing s_g = h_g U_g (a vector over factors f),
sum_{a<b} s_a s_b = ((sum_g s_g)^2 - sum_g s_g^2) / 2, so the cost stays linear in G.

Conditionals (what inference and sampling use):
- p(v | h) = N(b + sigma (W t(h) + sum_g P_g h_g), sigma^2), t_f(h) = sum_{a<b} s_{a,f} s_{b,f};
- p(h_g = 1 | v, h_rest) = sigmoid(U_g ((v/sigma) W  *  sum_{a != g} s_a) + (v/sigma) P_g + c_g):
  given v and the other groups one group is a product of Bernoullis, so block Gibbs sampling and
  mean-field inference go group by group.

Inference (`encode`): mean-field. The posterior over the groups has no closed form (the three-way
term couples them), so q(h | v) = prod_g prod_j Bernoulli(mu_gj) is found by `mean_field_steps`
sweeps of the fixed-point updates above, group by group, starting from the pairwise-only guess.
The representation is the concatenation of every group's mean mu (in [0, 1]); `decode` maps such
a code (or binary states) to the visible mean b + sigma (W t + P h), returned as logits (clamped to
(0, 1) first) because the zoo's figures apply a sigmoid to what `decode` gives.

Training (`training_step`, which owns its update):
- likelihood: contrastive divergence. The positive phase is the mean-field posterior of the data;
  the negative phase runs `cd_steps` block-Gibbs sweeps (v | h, then each group | v, other groups)
  from the data's sampled posterior (CD-k) or, with `persistent_chains` > 0, from persistent chains
  (PCD, Tieleman 2008). The gradient of the log-likelihood is <-dE/dtheta>_data - <-dE/dtheta>_model,
  which is the gradient of the surrogate E(v+, mu+) - E(v-, h-) with all states held constant, so
  Adam steps on that surrogate. E is multilinear in the hidden units, so E at the mean-field means is
  the exact expectation of E under the factorised posterior.
- correspondence (the paper's manifold/correspondence term): on a factor sweep (images, k) every
  image shares all factors but k. Group g is assigned to factor g (the factor dataset's column),
  so every group but k should give the same code to all images of the batch; the term is the mean
  squared distance between the mean-field codes of those groups over all pairs of the batch
  (self-pairs included: twice the within-batch variance), weighted by `correspondence_weight`. Its
  gradient flows through the unrolled mean-field iterations. The likelihood keeps the groups from
  collapsing to constants; the paper adds the term to the log-likelihood in the same way.
- logged: reconstruction (squared error of the visible mean given the data's mean-field code, summed
  over pixels, mean over batch), free_energy_gap (variational free energy of the data minus that
  of the negative samples: positive while the model has not learned to prefer the data),
  correspondence, total (the surrogate plus the weighted correspondence: what Adam minimises).

Group sizes: `latent_dim` hidden units are split as evenly as possible over `num_factors` groups
(see.py sets num_factors to the factor dataset's factor count, as for DC-IGN).

Frames or patches? The paper trained disBM on whole small face images and on the output of a
first-layer RBM. Here the visible layer is the whole frame, because that is tractable: every product
is a (batch x pixels) by (pixels x factors) matrix multiply. Measured on the 2-core machine with one
torch thread, while other jobs held the load average at 6-7 (so every figure is inflated, the
ratios are what count), batch 64, 256 factors, CD-1, 5 mean-field sweeps: dSprites frames
(1x64x64, 50 units) 126 ms per training step (509 images/s) and 7,500 images/s encoded; 3x64x64
frames (32 units) 261 ms (245 images/s); the conv beta-VAE under the same load 228 ms per step on
dSprites. The see stage trained 1,500 dSprites steps in 192 s and encoded the 737,280-image grid in
80 s. A patch or feature basis would add a second model without buying anything needed.
Reconstruction (squared error per dSprites image, fixed batch of 256; the batch's mean image
scores 149): 10 units (2 per group) 168 -> 145 in 300 steps, 50 units 168 -> 83 in 240 steps, so
the YAML uses 50; after 1,500 steps the training batches score 46-57.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from vision_models.base import VisionModel


def _binary_entropy(p: Tensor) -> Tensor:
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(p * p.log() + (1 - p) * (1 - p).log())


class DisBM(VisionModel):
    """Gaussian-Bernoulli higher-order Boltzmann machine with one hidden group per ground-truth factor."""

    batches = "factor_sweeps"
    traversal_span = 0.5  # codes are Bernoulli means in [0, 1]

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 32,
        num_factors: int = 6,
        factors: int = 256,
        sigma: float = 0.5,
        cd_steps: int = 1,
        persistent_chains: int = 0,
        mean_field_steps: int = 5,
        correspondence_weight: float = 1.0,
        init_scale: float = 0.01,
    ):
        super().__init__(input_shape, latent_dim)
        checks = (
            ("num_factors", num_factors, 1),
            ("factors", factors, 1),
            ("cd_steps", cd_steps, 1),
            ("persistent_chains", persistent_chains, 0),
            ("mean_field_steps", mean_field_steps, 1),
        )
        for name, value, least in checks:
            if int(value) < least:
                raise ValueError(f"{name} must be >= {least}, got {value}")
        if int(num_factors) > self.latent_dim:
            raise ValueError(f"latent_dim {self.latent_dim} < num_factors {num_factors}: one unit per group at least")
        if not float(sigma) > 0 or float(correspondence_weight) < 0:
            raise ValueError(f"need sigma > 0 and correspondence_weight >= 0, got {sigma}, {correspondence_weight}")
        self.num_factors, self.factors = int(num_factors), int(factors)
        self.sigma, self.correspondence_weight = float(sigma), float(correspondence_weight)
        self.cd_steps, self.mean_field_steps = int(cd_steps), int(mean_field_steps)
        self.persistent_chains = int(persistent_chains)
        sizes = [len(a) for a in np.array_split(np.arange(self.latent_dim), self.num_factors)]
        self.group_slices = [slice(int(s - n), int(s)) for s, n in zip(np.cumsum(sizes), sizes)]
        visible = math.prod(self.input_shape)
        scale = float(init_scale)
        self.visible_factors = nn.Parameter(scale * torch.randn(visible, self.factors))  # W
        # U: every group's factor loadings, stacked (rows of group g at group_slices[g]). Larger than W so the
        # three-way term is not vanishingly small at initialisation (it is a product of three loadings).
        self.hidden_factors = nn.Parameter(0.1 * torch.randn(self.latent_dim, self.factors))
        self.pairwise = nn.Parameter(scale * torch.randn(visible, self.latent_dim))  # P
        self.visible_bias = nn.Parameter(torch.zeros(visible))  # b
        self.hidden_bias = nn.Parameter(torch.zeros(self.latent_dim))  # c
        # PCD's fantasy particles (visible states); `chains_started` is 0 until they are seeded from data.
        self.register_buffer("chains", torch.zeros(self.persistent_chains, visible))
        self.register_buffer("chains_started", torch.zeros((), dtype=torch.long))
        # The machine models centred frames v - centre: each channel's mean over the first training batch (one
        # value per channel: a factor sweep's per-pixel mean would be one scene's), fixed from then on and saved
        # with the weights. Uncentred, a bright colour frame sums ~12,000 same-sign
        # pixels into every hidden input, and the first CD updates turned every unit on for good (measured on
        # CollectGoodObjects: all 50 means at 1.000 within five Adam steps; centred, they stay spread).
        self.register_buffer("centre", torch.zeros(visible))
        self.register_buffer("centre_set", torch.zeros((), dtype=torch.long))

    # ---- energy and conditionals ----------------------------------------------------------------

    def _group_products(self, h: Tensor) -> list[Tensor]:
        """s_g = h_g U_g for every group: (N, factors) each."""
        return [h[:, sl] @ self.hidden_factors[sl] for sl in self.group_slices]

    @staticmethod
    def _pair_sum(products: list[Tensor]) -> Tensor:
        """t_f = sum over pairs of groups a < b of s_af s_bf: (N, factors)."""
        total = sum(products)
        return 0.5 * (total.pow(2) - sum(s.pow(2) for s in products))

    def energy(self, v: Tensor, h: Tensor) -> Tensor:
        """E(v, h) per example (N,), for visible states v (N, D) and hidden states or means h (N, latent_dim)."""
        scaled = v / self.sigma
        quadratic = (v - self.visible_bias).pow(2).sum(1) / (2 * self.sigma**2)
        three_way = ((scaled @ self.visible_factors) * self._pair_sum(self._group_products(h))).sum(1)
        pairwise = ((scaled @ self.pairwise) * h).sum(1) + h @ self.hidden_bias
        return quadratic - three_way - pairwise

    def visible_mean(self, h: Tensor) -> Tensor:
        """Mean of p(v | h): (N, D)."""
        drive = self._pair_sum(self._group_products(h)) @ self.visible_factors.T + h @ self.pairwise.T
        return self.visible_bias + self.sigma * drive

    def _group_input(self, g: int, visible_factors: Tensor, visible_pairwise: Tensor, products: list[Tensor]) -> Tensor:
        """Total input to group g's units given v (through its projections) and the other groups."""
        sl = self.group_slices[g]
        others = sum(s for a, s in enumerate(products) if a != g) if len(products) > 1 else 0.0
        return (visible_factors * others) @ self.hidden_factors[sl].T + visible_pairwise[:, sl] + self.hidden_bias[sl]

    def mean_field(self, v: Tensor, steps: int | None = None) -> Tensor:
        """Mean-field posterior means mu (N, latent_dim) of every hidden group given visible states v (N, D)."""
        scaled = v / self.sigma
        visible_factors, visible_pairwise = scaled @ self.visible_factors, scaled @ self.pairwise
        mu = torch.sigmoid(visible_pairwise + self.hidden_bias)  # the pairwise-only guess
        for _ in range(self.mean_field_steps if steps is None else steps):
            groups = [mu[:, sl] for sl in self.group_slices]
            products = self._group_products(mu)
            for g, sl in enumerate(self.group_slices):
                groups[g] = torch.sigmoid(self._group_input(g, visible_factors, visible_pairwise, products))
                products[g] = groups[g] @ self.hidden_factors[sl]
            mu = torch.cat(groups, dim=1)
        return mu

    def gibbs_hidden(self, v: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        """One block-Gibbs sweep over the groups given v, starting from hidden states h: (samples, probabilities)."""
        scaled = v / self.sigma
        visible_factors, visible_pairwise = scaled @ self.visible_factors, scaled @ self.pairwise
        products = self._group_products(h)
        samples, probabilities = [], []
        for g, sl in enumerate(self.group_slices):
            p = torch.sigmoid(self._group_input(g, visible_factors, visible_pairwise, products))
            sample = torch.bernoulli(p)
            products[g] = sample @ self.hidden_factors[sl]
            samples.append(sample)
            probabilities.append(p)
        return torch.cat(samples, dim=1), torch.cat(probabilities, dim=1)

    def sample_visible(self, h: Tensor) -> Tensor:
        mean = self.visible_mean(h)
        return mean + self.sigma * torch.randn_like(mean)

    def free_energy(self, v: Tensor, mu: Tensor) -> Tensor:
        """Variational (mean-field) free energy E_q[E(v, h)] - H(q) per example: an upper bound on F(v)."""
        return self.energy(v, mu) - _binary_entropy(mu).sum(1)

    # ---- the VisionModel interface ---------------------------------------------------------------

    def centred(self, images: Tensor) -> Tensor:
        """Frames (N, C, H, W) as the machine's visible states (N, D): flattened, less the centre."""
        return images.flatten(1) - self.centre

    def encode(self, x: Tensor) -> tuple[Tensor, None]:
        return self.mean_field(self.centred(x)), None

    def decode(self, z: Tensor) -> Tensor:
        mean = (self.visible_mean(z) + self.centre).clamp(1e-4, 1 - 1e-4)
        return torch.logit(mean).view(-1, *self.input_shape)

    def group_codes(self, mu: Tensor, group: int) -> Tensor:
        return mu[:, self.group_slices[group]]

    def correspondence(self, mu: Tensor, varying: int | None) -> Tensor:
        """Mean squared distance over all pairs of the batch between the codes of the groups whose factor is shared."""
        shared = torch.ones(self.latent_dim, dtype=torch.bool, device=mu.device)
        if varying is not None:
            shared[self.group_slices[varying]] = False
        return 2 * mu[:, shared].var(0, unbiased=False).sum()

    def negative_phase(self, v: Tensor, mu: Tensor) -> tuple[Tensor, Tensor]:
        """Negative statistics after `cd_steps` block-Gibbs sweeps from the data (CD-k) or the PCD chains.

        The chain alternates v ~ p(v | h) and a sweep of h over the groups; it returns the last hidden
        sample h_k with E[v | h_k] in place of a visible sample. Every parameter gradient of E is linear
        in v, so this is the same expected gradient with the Gaussian noise averaged out (Rao-Blackwell).
        """
        if self.persistent_chains:
            if not int(self.chains_started):
                rows = torch.randint(len(v), (self.persistent_chains,), device=v.device)
                self.chains.copy_(v[rows])
                self.chains_started.fill_(1)
            h = torch.bernoulli(self.mean_field(self.chains))
        else:
            h = torch.bernoulli(mu)
        for _ in range(self.cd_steps):
            v_sample = self.sample_visible(h)
            h, _ = self.gibbs_hidden(v_sample, h)
        if self.persistent_chains:
            self.chains.copy_(v_sample)
        return self.visible_mean(h), h

    def _unpack(self, batch) -> tuple[Tensor, int | None]:
        if isinstance(batch, (tuple, list)) and len(batch) == 2 and torch.is_tensor(batch[0]):
            images, factor = batch
            factor = int(factor)
            if not 0 <= factor < self.num_factors:
                raise ValueError(
                    f"factor {factor} out of range for num_factors {self.num_factors}: set num_factors to the "
                    f"factor dataset's factor count"
                )
            return images, factor
        if torch.is_tensor(batch):
            return batch, None  # plain frames: no known shared factor, so CD alone (no correspondence term)
        raise ValueError(f"DisBM expects a factor sweep (images, factor) or a tensor of images, got {type(batch)}")

    def loss(self, batch, step: int) -> tuple[Tensor, dict[str, float]]:
        images, varying = self._unpack(batch)
        if not self.centre_set:
            with torch.no_grad():
                channel_means = images.mean((0, 2, 3), keepdim=True)  # (1, C, 1, 1)
                self.centre.copy_(channel_means.expand(1, *self.input_shape).flatten())
                self.centre_set.fill_(1)
        v = self.centred(images)
        mu = self.mean_field(v)
        with torch.no_grad():
            v_neg, h_neg = self.negative_phase(v, mu.detach())
            reconstruction = (self.visible_mean(mu) - v).pow(2).sum(1).mean()
            gap = (self.free_energy(v, mu).mean() - self.free_energy(v_neg, self.mean_field(v_neg)).mean()).item()
        surrogate = self.energy(v, mu.detach()).mean() - self.energy(v_neg, h_neg).mean()
        correspondence = self.correspondence(mu, varying) if varying is not None else mu.new_zeros(())
        total = surrogate + self.correspondence_weight * correspondence
        return total, {
            "reconstruction": reconstruction.item(),
            "free_energy_gap": gap,
            "correspondence": correspondence.item(),
            "total": total.item(),
        }

    def training_step(self, batch, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
        """CD-k / PCD on the energy surrogate plus the correspondence term; no update when a term is not finite."""
        total, terms = self.loss(batch, step)
        if all(math.isfinite(v) for v in terms.values()):
            optimizer = optimizers["model"]
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
        return terms
