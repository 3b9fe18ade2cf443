"""The factor-dataset protocol: ground truth for disentanglement metrics and factor-aware training.

A factor dataset is a finite grid of generative factors (each factor a number of discrete classes)
and a renderer from factor values to images. Procedural dSprites implements it, and so does every
built-in environment that can render a frame from chosen factor values. Metrics (vision_models/metrics)
and the training loop only rely on this protocol, so envs and vision_models never import each other.

Conventions:
- `factors` are integer class indices, shape (n, num_factors), column k in range(factor_sizes[k]).
- `render(factors)` returns uint8 images (n, H, W, C), the layout of every frame in darla.
- A grid point's flat index is `np.ravel_multi_index(factors.T, factor_sizes)` (C order).
- Optionally, `allowed(factors) -> bool (n,)` marks the grid points that training may use (an
  environment's held-out combinations are evaluated by metrics but never trained on).
- Optionally, `factor_value_names(factor) -> tuple[str, ...]` names the classes of a factor (for
  labels, e.g. SCAN's symbols); without it a class is named `<factor>=<index>` (see `value_names`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FactorDataset(Protocol):
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    image_shape: tuple[int, int, int]  # (H, W, C) of rendered images

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n factor vectors drawn uniformly from the grid: int64 (n, num_factors)."""
        ...

    def render(self, factors: np.ndarray) -> np.ndarray:
        """uint8 images (n, H, W, C) for the factor vectors (n, num_factors)."""
        ...


def checked_factors(factors, factor_names, factor_sizes) -> np.ndarray:
    """``factors`` as int64 class indices (n, len(factor_sizes)) within the grid, or a ValueError saying why not."""
    factors = np.asarray(factors)
    if (
        factors.ndim != 2
        or factors.shape[1] != len(factor_sizes)
        or (factors.size and not np.issubdtype(factors.dtype, np.integer))
    ):
        raise ValueError(
            f"factors must be integer class indices of shape (n, {len(factor_sizes)}) "
            f"for {tuple(factor_names)}; got dtype {factors.dtype}, shape {factors.shape}"
        )
    factors = factors.astype(np.int64)
    bad = (factors < 0) | (factors >= np.asarray(factor_sizes))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"factors[{row}, {col}] = {factors[row, col]} is outside {factor_names[col]}'s "
            f"range 0..{factor_sizes[col] - 1}"
        )
    return factors


def uniform_factors(factor_sizes, n: int, rng: np.random.Generator) -> np.ndarray:
    """n factor vectors drawn uniformly and independently per factor: int64 (n, len(factor_sizes))."""
    return np.stack([rng.integers(0, size, n) for size in factor_sizes], axis=1).astype(np.int64)


def flat_index(factors: np.ndarray, factor_sizes) -> np.ndarray:
    """Row of each factor vector in the C-ordered grid: int64 (n,)."""
    return np.ravel_multi_index(tuple(np.asarray(factors, np.int64).T), tuple(factor_sizes)).astype(np.int64)


def grid_factors(factor_sizes) -> np.ndarray:
    """Every grid point, in flat-index order: int64 (prod(factor_sizes), num_factors)."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(factor_sizes))), tuple(factor_sizes)), axis=1).astype(
        np.int64
    )


def value_names(dataset, factor: int) -> tuple[str, ...]:
    """Names of the classes of factor column ``factor``: the dataset's own, or ``<factor>=<index>``."""
    size = int(dataset.factor_sizes[factor])
    if hasattr(dataset, "factor_value_names"):
        names = tuple(str(n) for n in dataset.factor_value_names(factor))
        if len(names) == size:
            return names
    return tuple(f"{dataset.factor_names[factor]}={i}" for i in range(size))


MAX_DRAWS = 1000  # rejection sampling of allowed points gives up after this many tries


def training_allowed(dataset, factors: np.ndarray) -> np.ndarray:
    """Bool (n,): which factor vectors training may use (the dataset's ``allowed``; all of them without one)."""
    return dataset.allowed(factors) if hasattr(dataset, "allowed") else np.ones(len(factors), bool)


def sample_training_factors(dataset: FactorDataset, n: int, rng: np.random.Generator) -> np.ndarray:
    """n factor vectors drawn uniformly from the grid points training may use (see `allowed`)."""
    rows = []
    for _ in range(MAX_DRAWS):
        draw = dataset.sample_factors(n, rng)
        rows.append(draw[training_allowed(dataset, draw)])
        if sum(len(r) for r in rows) >= n:
            return np.concatenate(rows)[:n]
    raise ValueError(f"{type(dataset).__name__}: no allowed grid point in {MAX_DRAWS} draws of {n}")


def sweep_factors(dataset: FactorDataset, n: int, factor: int, rng: np.random.Generator) -> np.ndarray:
    """n factor vectors that share every factor but `factor`, which is drawn at random per row.

    The batches DC-IGN trains on (one factor varies, the others are fixed) and the pairs the
    BetaVAE and FactorVAE scores compare (one factor fixed) are built from such sweeps.
    Sweeps that would touch a point training may not use (see `allowed`) are drawn again.
    """
    for _ in range(MAX_DRAWS):
        factors = np.repeat(dataset.sample_factors(1, rng), n, axis=0)
        factors[:, factor] = rng.integers(0, dataset.factor_sizes[factor], n)
        if training_allowed(dataset, factors).all():
            return factors
    raise ValueError(
        f"{type(dataset).__name__}: no sweep of factor {factor} free of disallowed points in {MAX_DRAWS} draws"
    )
