"""ICF: Independently Controllable Factors (Thomas, Pondard, Bengio et al. 2017, "Independently Controllable
Factors"; Thomas et al. 2018, "Disentangling the independently controllable factors of variation by
interacting with the world").

An autoencoder (encoder f, decoder g) plus K policies pi_k(a | s), one per latent (K = latent_dim unless
`num_policies` says fewer: the first K latents are the controllable ones). The selectivity of latent k
for a transition (s, a, s') is

    sel_k(s, a, s') = |f_k(s') - f_k(s)| / sum_j |f_j(s') - f_j(s)|,

and the objective rewards each policy for changing its own latent and no other:

    loss = reconstruction(s) - selectivity_weight * mean_k E_{a ~ pi_k(.|s)}[sel_k(s, a, s')].

Design, and why:

- Experience. The model trains on transitions (s, a, s', mu) that the see stage collects while it trains
  (`batches = "transitions"`, darla/vision_training.py's TransitionBatches): at every step each env
  worker draws a policy k uniformly and acts with (1 - epsilon) pi_k + epsilon uniform; mu is the
  probability of the action under that behaviour. Transitions go to a replay of recent ones, from
  which minibatches are drawn, so the behaviour is a slightly older policy than the one trained.
- The expectation over a ~ pi_k is estimated from the replay with importance weights
  w_k = pi_k(a | s) / mu(a | s), clipped at `max_importance`: the ratio is unbiased for any k whatever
  policy the behaviour followed (mu is the probability of the action actually drawn), and with
  epsilon > 0, mu >= epsilon / A bounds it. The exact expectation sum_a pi_k(a|s) sel_k(s, a) would
  need s' for every action from the same s (stepping copies of the env), which Miniworld cannot
  clone cheaply; one stored transition per step is what the replay gives.
- Gradients. The estimate w_k * sel_k is differentiated both ways: through sel_k into the encoder
  (w_k held constant: it makes the latents controllable), and through w_k into pi_k with sel_k held
  constant minus a per-latent baseline (the batch mean of sel_k): this is REINFORCE with importance
  weights, since grad w = w grad log pi. A small entropy bonus keeps the policies from collapsing
  before the latents mean anything.
- Policies read the latent code detached: their gradient trains the policy head only, so the
  encoder is shaped by reconstruction and selectivity alone (the paper's f is shared, but its
  policy gradient on f is a high-variance signal we do not need).
- `encode` returns (code, None): deterministic, like the DAE, so metrics, traversals, the task probe
  and act treat it as any model.
- Scale: the reconstruction is summed over pixels (hundreds of nats) while a selectivity is in [0, 1],
  hence selectivity_weight 100 by default.

Measured (tests/test_icf.py, one CPU thread on a loaded 2-core machine): on a dot on an 8x8 torus whose
four actions each move x or y, 2 latents, batch 32, 300 steps (20 s), the mean own-latent selectivity
of the greedy policies on fresh transitions went from 0.50 at initialisation (0.48, 0.52) to 0.86
(0.81, 0.90). On a 4x4 grid with walls the same run fell (0.39 -> 0.16): deterministic policies learned
to push into a wall, where nothing changes and the selectivity is 0 - the objective has no term that
asks a policy to keep moving, so an env where every action has an effect is the clean test.
`see experiment=quick vision_model=icf` on CollectGoodObjects (2 subprocess workers, 30 steps of
batch 64, 8 latents) trains in 28 s with collection; its selectivity is then chance (mean 0.11 ~ 1/8).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vision_models.base import VisionModel, bernoulli_reconstruction, squared_error
from vision_models.nets import ConvDecoder, ConvEncoder

EPS = 1e-8


def selectivity_scores(delta: Tensor) -> Tensor:
    """(N, D) latent changes f(s') - f(s) -> (N, D) selectivity |delta_k| / sum_j |delta_j| (0 where nothing moves)."""
    magnitude = delta.abs()
    return magnitude / (magnitude.sum(1, keepdim=True) + EPS)


class ICF(VisionModel):
    """Autoencoder with one policy per latent, trained on transitions to make each latent controllable."""

    batches = "transitions"

    def __init__(
        self,
        input_shape=(3, 64, 64),
        latent_dim: int = 8,
        num_actions: int = 3,
        num_policies: int | None = None,
        selectivity_weight: float = 100.0,
        entropy_weight: float = 0.01,
        max_importance: float = 10.0,
        policy_hidden: int = 64,
        reconstruction: str = "bernoulli",
    ):
        super().__init__(input_shape, latent_dim)
        self.num_actions = int(num_actions)
        self.num_policies = self.latent_dim if num_policies is None else int(num_policies)
        if self.num_actions < 2 or not 1 <= self.num_policies <= self.latent_dim:
            raise ValueError(
                f"need num_actions >= 2 and 1 <= num_policies <= latent_dim ({self.latent_dim}), "
                f"got {num_actions} and {num_policies}"
            )
        if reconstruction not in ("bernoulli", "gaussian"):
            raise ValueError(f"reconstruction must be 'bernoulli' or 'gaussian', got {reconstruction!r}")
        self.selectivity_weight, self.entropy_weight = float(selectivity_weight), float(entropy_weight)
        self.max_importance, self.reconstruction = float(max_importance), reconstruction
        channels = self.input_shape[0]
        self.encoder = ConvEncoder(channels, self.latent_dim)
        self.decoder = ConvDecoder(self.latent_dim, channels)
        self.policy = nn.Sequential(
            nn.Linear(self.latent_dim, policy_hidden),
            nn.ReLU(),
            nn.Linear(policy_hidden, self.num_policies * self.num_actions),
        )

    def encode(self, x: Tensor) -> tuple[Tensor, None]:
        return self.encoder(x), None

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def policy_log_probs(self, code: Tensor) -> Tensor:
        """(N, K, A) log pi_k(a | s) from the (detached) latent code of s."""
        logits = self.policy(code.detach()).view(-1, self.num_policies, self.num_actions)
        return torch.log_softmax(logits, -1)

    @torch.no_grad()
    def behaviour(self, x: Tensor, epsilon: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Actions in frames ``x``, each of a policy k drawn uniformly, epsilon-uniform; and their probabilities."""
        return self.act(x, torch.randint(self.num_policies, (len(x),), generator=generator), epsilon, generator)

    @torch.no_grad()
    def act(self, x: Tensor, k: Tensor, epsilon: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Actions of policies ``k`` (N,) in frames ``x`` with epsilon-uniform exploration, and their probabilities."""
        probs = self.policy_log_probs(self.encode(x)[0]).exp()[torch.arange(len(k)), k.to(x.device)].cpu()
        probs = (1 - epsilon) * probs + epsilon / self.num_actions
        actions = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return actions, probs.gather(1, actions[:, None]).squeeze(1)

    def _terms(self, batch: dict[str, Tensor]):
        s, s_next, actions, mu = batch["obs"], batch["next_obs"], batch["action"].long(), batch["mu"]
        code, next_code = self.encode(s)[0], self.encode(s_next)[0]
        sel = selectivity_scores(next_code - code)[:, : self.num_policies]  # (N, K)
        log_pi = self.policy_log_probs(code)  # (N, K, A)
        log_pi_a = log_pi.gather(2, actions[:, None, None].expand(-1, self.num_policies, 1)).squeeze(2)
        weights = torch.exp(log_pi_a - mu.clamp_min(EPS).log()[:, None]).clamp(max=self.max_importance)
        return code, sel, weights, log_pi

    def loss(self, batch: dict[str, Tensor], step: int) -> tuple[Tensor, dict[str, float]]:
        if not isinstance(batch, dict) or "next_obs" not in batch:
            raise ValueError(
                "ICF.loss expects transitions {obs, action, next_obs, mu} from darla's TransitionBatches; got "
                f"{type(batch).__name__}: ICF learns by acting in the env's vision domains"
            )
        code, sel, weights, log_pi = self._terms(batch)
        logits = self.decode(code)
        target = batch["obs"]
        if self.reconstruction == "bernoulli":
            reconstruction = bernoulli_reconstruction(logits, target)
        else:
            reconstruction = squared_error(torch.sigmoid(logits), target)
        encoder_term = (weights.detach() * sel).mean()
        advantage = sel.detach() - sel.detach().mean(0, keepdim=True)
        policy_term = (weights * advantage).mean()
        entropy = -(log_pi.exp() * log_pi).sum(-1).mean()
        total = reconstruction - self.selectivity_weight * (encoder_term + policy_term) - self.entropy_weight * entropy
        own = self._estimate(sel.detach(), weights.detach())
        return total, {
            "reconstruction": reconstruction.item(),
            "selectivity": own.mean().item(),
            "entropy": entropy.item(),
            "total": total.item(),
        }

    @staticmethod
    def _estimate(sel: Tensor, weights: Tensor) -> Tensor:
        """Self-normalised importance estimate of E_{pi_k}[sel_k]: (K,)."""
        return (weights * sel).sum(0) / weights.sum(0).clamp_min(EPS)

    @torch.no_grad()
    def selectivity(self, batch: dict[str, Tensor]) -> Tensor:
        """(K,) mean selectivity of latent k under pi_k over these transitions (importance weighted)."""
        _, sel, weights, _ = self._terms(batch)
        return self._estimate(sel, weights)

    def acting_report(self, batch: dict[str, Tensor]) -> dict:
        """The trained policies' selectivity of their own latents, on fresh transitions."""
        selectivity = self.selectivity(batch).cpu().tolist()
        return {"selectivity": selectivity, "mean_selectivity": sum(selectivity) / len(selectivity)}
