"""SCAN (Higgins et al., ICLR 2018): symbols grounded in the latents of a trained vision model.

- SymbolSpace: symbols as partial assignments of chosen ground-truth factors (a value per named factor,
  -1 where a factor is not named), their k-hot vectors, names, and the three recombination operators.
- SymbolVAE: q(z_y|y) and p(y|z_y), MLPs over k-hot symbols. Its loss is its own reconstruction of y,
  β·KL(q(z_y|y) || N(0, I)) and λ·KL(q(z_x|x) || q(z_y|y)), the *forward* KL from the vision model's
  posterior of an image x that fits y to the symbol's posterior. The forward KL is mass-covering: where
  the images of a symbol vary (a latent the symbol does not name), q(z_y|y) must stay as broad as all of
  them, so an unnamed latent stays at the prior's breadth and sym2img samples vary there.
- Recombination: a learned operator on two symbol posteriors (AND, IN COMMON, IGNORE), applied to every
  latent dimension alike (the paper's conditional 1x1 convolution over (μ1, σ1, μ2, σ2)), trained with
  the same forward KL to visual posteriors of images that fit the recombined symbol.
- FactorJudge: a small CNN that classifies every factor of a frame; the evaluation instrument of
  sym2img (darla/scan.py says what it is trained on and why).

No Hydra, no files: darla/scan.py (the stage) builds, trains and evaluates these.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision_models.base import gaussian_kl, reparameterize
from vision_models.nets import ConvEncoder

OPERATORS = ("AND", "IN_COMMON", "IGNORE")
UNNAMED = -1


def forward_kl(mean_x: Tensor, logvar_x: Tensor, mean_y: Tensor, logvar_y: Tensor) -> Tensor:
    """KL(N(mean_x, exp(logvar_x)) || N(mean_y, exp(logvar_y))) per latent dimension, closed form: (N, D).

    0.5 * (logvar_y - logvar_x + (exp(logvar_x) + (mean_x - mean_y)^2) / exp(logvar_y) - 1).
    """
    return 0.5 * (logvar_y - logvar_x + (logvar_x.exp() + (mean_x - mean_y).pow(2)) / logvar_y.exp() - 1.0)


class SymbolSpace:
    """Symbols over some factors of a factor dataset: each names a value for a non-empty subset of them.

    A symbol is an int vector over the chosen factors, a class index where the factor is named and
    UNNAMED (-1) elsewhere. Its k-hot vector concatenates one block per factor: a one-hot of the
    named value, zeros where the factor is not named (the unnamed attributes are free).
    """

    def __init__(self, factor_names: Sequence[str], factor_sizes: Sequence[int], value_names: Sequence[Sequence[str]]):
        self.factor_names = tuple(factor_names)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.value_names = tuple(tuple(v) for v in value_names)
        self.offsets = np.concatenate([[0], np.cumsum(self.factor_sizes)[:-1]]).astype(np.int64)
        self.size = int(sum(self.factor_sizes))  # k of the k-hot vectors

    def khot(self, symbols: np.ndarray) -> np.ndarray:
        """float32 (n, size): the k-hot vector of each symbol (n, num_factors)."""
        symbols = np.atleast_2d(np.asarray(symbols, np.int64))
        out = np.zeros((len(symbols), self.size), np.float32)
        rows, cols = np.nonzero(symbols != UNNAMED)
        out[rows, self.offsets[cols] + symbols[rows, cols]] = 1.0
        return out

    def blocks(self, scores: np.ndarray) -> np.ndarray:
        """int (n, num_factors): the highest-scoring value of each factor's block of (n, size) scores."""
        return np.stack(
            [scores[:, o : o + s].argmax(1) for o, s in zip(self.offsets, self.factor_sizes)], axis=1
        ).astype(np.int64)

    def name(self, symbol: Sequence[int]) -> str:
        """'hat_can + alternative': the named values, in factor order."""
        return " + ".join(self.value_names[f][v] for f, v in enumerate(symbol) if v != UNNAMED)

    def all_symbols(self) -> np.ndarray:
        """Every symbol (every non-empty subset of factors x every value of each): int (S, num_factors)."""
        choices = [range(UNNAMED, s) for s in self.factor_sizes]
        rows = [row for row in itertools.product(*choices) if any(v != UNNAMED for v in row)]
        return np.array(rows, np.int64)

    @staticmethod
    def fits(symbol: Sequence[int], values: np.ndarray) -> np.ndarray:
        """bool (n,): which value vectors (n, num_factors) agree with ``symbol`` on every factor it names."""
        symbol = np.asarray(symbol)
        named = symbol != UNNAMED
        return (values[:, named] == symbol[named]).all(axis=1)

    @staticmethod
    def combine(op: str, a: Sequence[int], b: Sequence[int]) -> np.ndarray | None:
        """The symbol op(a, b), or None where the operator does not apply or the result names nothing.

        AND: the union of what a and b name (None if they name different values of one factor);
        IN_COMMON: what both name with the same value; IGNORE: a without the factors b names (b must
        name a subset of a's named values).
        """
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        na, nb = a != UNNAMED, b != UNNAMED
        if op == "AND":
            if (na & nb & (a != b)).any():
                return None
            result = np.where(na, a, b)
        elif op == "IN_COMMON":
            result = np.where(na & nb & (a == b), a, UNNAMED)
        elif op == "IGNORE":
            if not nb.any() or (nb & ~(na & (a == b))).any():
                return None
            result = np.where(nb, UNNAMED, a)
        else:
            raise ValueError(f"unknown operator {op!r}; expected one of {OPERATORS}")
        return result if (result != UNNAMED).any() else None


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, outputs)
    )


class SymbolVAE(nn.Module):
    """SCAN's symbol VAE: k-hot symbols y <-> latents z_y in the vision model's latent space.

    loss = BCE(p(y|z_y), y) + beta * KL(q(z_y|y) || N(0, I)) + forward_kl_weight * KL(q(z_x|x) || q(z_y|y)),
    each summed over its dimensions and averaged over the batch (the paper: beta 1, weight 10).
    """

    def __init__(
        self, num_symbols: int, latent_dim: int, hidden: int = 100, beta: float = 1.0, forward_kl_weight: float = 10.0
    ):
        super().__init__()
        self.num_symbols, self.latent_dim = int(num_symbols), int(latent_dim)
        self.beta, self.forward_kl_weight = float(beta), float(forward_kl_weight)
        self.encoder = _mlp(self.num_symbols, hidden, 2 * self.latent_dim)
        self.decoder = _mlp(self.latent_dim, hidden, self.num_symbols)

    def encode(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logvar) of q(z_y|y), each (N, latent_dim)."""
        mean, logvar = self.encoder(y).chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: Tensor) -> Tensor:
        """Logits of p(y|z) over the k-hot entries: (N, num_symbols)."""
        return self.decoder(z)

    def loss(self, y: Tensor, mean_x: Tensor, logvar_x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The SCAN loss of symbols y (N, k) paired with visual posteriors (N, D) of images that fit them."""
        mean_y, logvar_y = self.encode(y)
        logits = self.decode(reparameterize(mean_y, logvar_y))
        reconstruction = F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(1).mean()
        prior_kl = gaussian_kl(mean_y, logvar_y).sum(1).mean()
        visual_kl = forward_kl(mean_x, logvar_x, mean_y, logvar_y).sum(1).mean()
        total = reconstruction + self.beta * prior_kl + self.forward_kl_weight * visual_kl
        return total, {
            "reconstruction": reconstruction.item(),
            "prior_kl": prior_kl.item(),
            "forward_kl": visual_kl.item(),
        }


class Recombination(nn.Module):
    """A learned operator on two Gaussian posteriors, the same small network for every latent dimension.

    Each dimension's (mean1, logvar1, mean2, logvar2) and the operator's one-hot go through an MLP to
    that dimension's (mean, logvar): the paper's conditional convolution with 1x1 kernels.
    """

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.net = _mlp(4 + len(OPERATORS), hidden, 2)

    def forward(
        self, mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor, op: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Posteriors (N, D) each and operator indices (N,) -> the recombined (mean, logvar), (N, D)."""
        n, d = mean1.shape
        which = F.one_hot(op, len(OPERATORS)).to(mean1.dtype)[:, None, :].expand(n, d, len(OPERATORS))
        inputs = torch.cat([torch.stack([mean1, logvar1, mean2, logvar2], dim=-1), which], dim=-1)
        mean, logvar = self.net(inputs).unbind(-1)
        return mean, logvar

    def loss(self, posteriors: tuple[Tensor, ...], op: Tensor, mean_x: Tensor, logvar_x: Tensor) -> Tensor:
        """KL(q(z_x|x) || recombined posterior), summed over dimensions, mean over the batch."""
        mean, logvar = self(*posteriors, op)
        return forward_kl(mean_x, logvar_x, mean, logvar).sum(1).mean()


class FactorJudge(nn.Module):
    """A classifier of every factor of a frame (the DARLA conv stack, one logit block per factor)."""

    def __init__(self, factor_sizes: Sequence[int], in_channels: int = 3):
        super().__init__()
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.net = ConvEncoder(in_channels, sum(self.factor_sizes))

    def forward(self, x: Tensor) -> list[Tensor]:
        """Images (N, C, 64, 64) in [0, 1] -> one (N, size) logit tensor per factor."""
        return list(self.net(x).split(self.factor_sizes, dim=1))

    def loss(self, x: Tensor, factors: Tensor) -> Tensor:
        """Cross-entropy summed over factors, mean over the batch."""
        return sum(F.cross_entropy(logits, factors[:, k]) for k, logits in enumerate(self(x)))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The most likely class of every factor: int64 (N, num_factors)."""
        return torch.stack([logits.argmax(1) for logits in self(x)], dim=1)
