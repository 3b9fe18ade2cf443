"""Playing episodes with fixed seeds, and the statistics reported over their returns."""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import torch
from gymnasium import spaces
from scipy import stats
from stable_baselines3.common.vec_env import VecEnv

Act = Callable[[np.ndarray], np.ndarray]


def run_episodes(venv: VecEnv, act: Act, first_seed: int, episodes: int, domain: str | None = None) -> list[dict]:
    """Play ``episodes`` episodes; episode i is reset with seed ``first_seed + i``.

    ``domain`` pins the vector env's domain mixtures to that domain (see DomainMixture).
    The vector env plays them in batches of ``num_envs``; within a batch an env that finished
    is ignored until the others finish (its auto-reset episode is not counted), so every
    episode is exactly the one its seed defines. Sampling inside ``act`` is seeded per batch
    from a forked RNG, so results repeat and the caller's random streams are untouched.
    """
    n = venv.num_envs
    records: list[dict] = []
    np_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        for start in range(0, episodes, n):
            count = min(n, episodes - start)
            torch.manual_seed(first_seed + start)
            np.random.seed(first_seed + start)  # DQN's epsilon-greedy and random_act draw from it
            venv.seed(first_seed + start)  # SB3 gives env j the seed first_seed + start + j
            if domain is not None:
                venv.set_options({"domain": domain})
            obs = venv.reset()
            returns, lengths = np.zeros(n), np.zeros(n, dtype=int)
            active = np.arange(n) < count
            while active.any():
                obs, rewards, dones, _ = venv.step(act(obs))
                returns[active] += rewards[active]
                lengths[active] += 1
                for j in np.flatnonzero(dones & active):
                    records.append(
                        {"seed": first_seed + start + int(j), "return": float(returns[j]), "length": int(lengths[j])}
                    )
                    active[j] = False
    np.random.set_state(np_state)
    return sorted(records, key=lambda r: r["seed"])


def random_act(venv: VecEnv) -> Act:
    """A uniformly random policy over a Discrete, MultiDiscrete, MultiBinary or Box action space.

    It draws from numpy's global RNG, which ``run_episodes`` seeds per batch, so a random
    policy plays the same actions on every domain given the same seeds.
    """
    space = venv.action_space
    if isinstance(space, spaces.Discrete):
        return lambda obs: space.start + np.random.randint(space.n, size=len(obs))
    if isinstance(space, spaces.MultiDiscrete):
        return lambda obs: space.start + np.random.randint(space.nvec, size=(len(obs), *space.nvec.shape))
    if isinstance(space, spaces.MultiBinary):
        return lambda obs: np.random.randint(2, size=(len(obs), *space.shape)).astype(space.dtype)
    if isinstance(space, spaces.Box):
        return lambda obs: np.random.uniform(space.low, space.high, size=(len(obs), *space.shape)).astype(space.dtype)
    raise ValueError(f"no random policy for action space {space}; expected Discrete, MultiDiscrete, MultiBinary or Box")


def interquartile_mean(values: Sequence[float]) -> float:
    """Mean of the middle 50% of the values (25% trimmed from each end), as in rliable."""
    x = np.sort(np.asarray(values, dtype=float))
    cut = int(np.floor(0.25 * len(x)))
    return float(x[cut : len(x) - cut].mean()) if len(x) else float("nan")


def describe(returns: Sequence[float]) -> dict[str, float]:
    x = np.asarray(returns, dtype=float)
    return {
        "episodes": int(len(x)),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        "iqm": interquartile_mean(x),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def stratified_bootstrap_ci(
    scores: np.ndarray, rng: np.random.Generator, statistic=None, resamples: int = 2000, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile confidence interval of ``statistic`` over a (runs, tasks) score table.

    Each resample draws runs (seeds) with replacement separately within every task (column),
    rliable's stratified bootstrap, so every task keeps its weight; a single column is the plain
    bootstrap over runs. ``statistic`` maps a (runs, tasks) table to a number (default: IQM of all
    its entries). With one run there is nothing to resample and the interval is that run's value.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or 0 in scores.shape:
        raise ValueError(f"scores must be a non-empty (runs, tasks) table; got shape {scores.shape}")
    statistic = statistic or (lambda table: interquartile_mean(table.ravel()))
    runs, tasks = scores.shape
    picks = rng.integers(runs, size=(resamples, runs, tasks))
    values = np.array([statistic(np.take_along_axis(scores, pick, axis=0)) for pick in picks])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (scipy's spearmanr: ties share their average rank); nan if either is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D and of one length; got shapes {x.shape} and {y.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(x, y).statistic)
