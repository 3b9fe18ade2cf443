"""Codes of a factor grid, encoded once: what every supervised metric samples from.

No image is encoded twice: where the factor grid is finite (dSprites: 737,280
points), `encode_grid` renders and encodes every grid point once, in batches, and every metric
then draws its samples (pairs, votes, train/test sets) by looking rows up in the table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# A representation function: uint8 images (N, H, W, C) -> (mean (N, D), logvar (N, D) or None),
# float arrays. Stochastic models return their Gaussian posterior; deterministic ones logvar None.
Representation = Callable[[np.ndarray], tuple[np.ndarray, "np.ndarray | None"]]


class NotApplicable(ValueError):
    """A metric that does not apply to these codes (a posterior metric on a deterministic model):
    ``evaluate`` records it as skipped, with the reason."""


@dataclass
class FactorCodes:
    """The representation of every point of a factor grid, rows in C-ordered flat-index order."""

    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    mean: np.ndarray  # (prod(factor_sizes), D) float32
    logvar: np.ndarray | None = None  # same shape, for stochastic encoders (Chen's sampled MIG)
    encode_seconds: float = field(default=0.0, compare=False)

    def __post_init__(self):
        rows = int(np.prod(self.factor_sizes))
        if self.mean.ndim != 2 or len(self.mean) != rows:
            raise ValueError(
                f"mean has shape {self.mean.shape}; expected ({rows}, D) for factor sizes {self.factor_sizes}"
            )
        if self.logvar is not None and self.logvar.shape != self.mean.shape:
            raise ValueError(f"logvar has shape {self.logvar.shape}; expected {self.mean.shape}")

    @property
    def num_latents(self) -> int:
        return int(self.mean.shape[1])

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def rows(self, factors: np.ndarray) -> np.ndarray:
        """Flat row index of each factor vector (n, num_factors)."""
        return np.ravel_multi_index(tuple(np.asarray(factors, np.int64).T), self.factor_sizes)

    def lookup(self, factors: np.ndarray) -> np.ndarray:
        """Mean codes (n, D) of the factor vectors (n, num_factors)."""
        return self.mean[self.rows(factors)]

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor vectors drawn uniformly from the grid: int64 (n, num_factors)."""
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(factors (n, K), mean codes (n, D)) for n uniformly drawn grid points."""
        factors = self.sample_factors(n, rng)
        return factors, self.lookup(factors)


def encode_grid(dataset, representation: Representation, batch_size: int = 256) -> FactorCodes:
    """Render and encode every point of ``dataset``'s factor grid once (see envs/factor_dataset.py)."""
    sizes = tuple(int(s) for s in dataset.factor_sizes)
    total = int(np.prod(sizes))
    means, logvars = [], []
    start = time.perf_counter()
    for first in range(0, total, batch_size):
        flat = np.arange(first, min(first + batch_size, total))
        factors = np.stack(np.unravel_index(flat, sizes), axis=1).astype(np.int64)
        mean, logvar = representation(dataset.render(factors))
        means.append(np.asarray(mean, np.float32))
        if logvar is not None:
            logvars.append(np.asarray(logvar, np.float32))
    return FactorCodes(
        tuple(dataset.factor_names),
        sizes,
        np.concatenate(means),
        np.concatenate(logvars) if logvars else None,
        time.perf_counter() - start,
    )
