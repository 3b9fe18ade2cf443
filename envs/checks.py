"""Checks that an environment fits darla, run before any training so a bad env fails in seconds.

darla's vision reads one uint8 RGB-or-grey image per step, of the size the vision model was
built for (``env.observation_shape``, (C, H, W)), and its agents act through Stable-Baselines3,
whose algorithms accept only some action spaces. ``check_domain`` builds a domain's env once and
refuses it with a message that names the domain, the env id, what it gives and what was expected.
"""

from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.domains import Domain

# The action spaces each Stable-Baselines3 algorithm darla runs can act in.
ACTION_SPACES: dict[str, tuple[type[spaces.Space], ...]] = {
    "PPO": (spaces.Discrete, spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary),
    "DQN": (spaces.Discrete,),
}


def check_domain(domain: Domain, observation_shape: Sequence[int], algorithm: str) -> None:
    """Build ``domain``'s env and raise ValueError unless its spaces fit darla.

    ``observation_shape`` is the env config's (C, H, W); ``algorithm`` the agent's SB3 class name.
    """
    if algorithm not in ACTION_SPACES:
        raise ValueError(f"agent.algorithm={algorithm!r} is not known; expected one of {sorted(ACTION_SPACES)}")
    env = domain.make()
    try:
        check_spaces(env, f"domain {domain.name!r} (env {domain.env_id!r})", observation_shape, algorithm)
    finally:
        env.close()


def check_spaces(env: gym.Env, what: str, observation_shape: Sequence[int], algorithm: str) -> None:
    """Raise ValueError, naming ``what``, unless ``env`` gives fitting images and takes fitting actions."""
    obs = env.observation_space
    if isinstance(obs, (spaces.Dict, spaces.Tuple)):
        raise ValueError(
            f"{what} gives {type(obs).__name__.lower()} observations ({obs}); darla's vision expects "
            f"one image per step: wrap the env so its observation is the image alone"
        )
    if not isinstance(obs, spaces.Box) or len(obs.shape) != 3:
        shape = obs.shape if isinstance(obs, spaces.Box) else obs
        raise ValueError(
            f"{what} gives observations of shape {shape}, not images; darla's vision expects image "
            f"frames, uint8 of shape (H, W, C) (render the env to pixels with a wrapper)"
        )
    if obs.dtype != np.uint8:
        raise ValueError(f"{what} gives images of dtype {obs.dtype}; darla expects uint8 frames (0..255)")
    height, width, channels = obs.shape
    if [channels, height, width] != list(observation_shape):
        raise ValueError(
            f"{what} gives images of shape (H, W, C) {tuple(obs.shape)}, that is (C, H, W) "
            f"{[channels, height, width]}, but env.observation_shape is {list(observation_shape)}; "
            f"vision models take their input_shape from env.observation_shape: set it to "
            f"{[channels, height, width]} or resize the env's frames"
        )
    allowed = ACTION_SPACES[algorithm]
    if not isinstance(env.action_space, allowed):
        raise ValueError(
            f"{what} has action space {env.action_space}, which {algorithm} cannot use; "
            f"{algorithm} acts in {', '.join(s.__name__ for s in allowed)} spaces"
        )
