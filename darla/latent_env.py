"""The policy's view of the world: frames replaced by the frozen encoder's latent mean, or by
the env's ground-truth task state (the oracle baseline)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper


def frames_to_tensor(frames: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 frames (N, H, W, C) -> float tensor (N, C, H, W) in [0, 1].

    The result is a channels-last view, not a copy into NCHW order: CPU convolutions with 3 input
    channels run several times faster on it.
    """
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(device)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


class LatentObservation(VecEnvWrapper):
    """Encode every observation of a step in one batch with a frozen vision model.

    The policy sees ``encoder.representation(frame)`` (the encoder mean μ, DARLA's input), so
    ``MlpPolicy`` and small replay buffers are used. The encoder is put in eval mode and never
    receives gradients. Terminal observations (which PPO bootstraps from on truncation) are
    encoded in the same batch as the step's observations.

    With ``normalization`` ({"mean": [...], "std": [...]}, one value per latent, fixed before
    training: act.normalize), each latent is standardised and clipped to ±``CLIP`` (as SB3's
    VecNormalize does), so the policy reads latents of one scale whatever their KL.

    With ``resample`` (latent indices and a pool of codes (N, D), act.resample_nuisance, training only),
    those latents of every observation are replaced by the values of randomly drawn pool codes
    (numpy's global generator, which act's checkpoints keep), before any normalisation.
    """

    CLIP = 10.0

    def __init__(
        self,
        venv: VecEnv,
        encoder: torch.nn.Module,
        device: torch.device | str = "cpu",
        normalization: dict | None = None,
        resample: tuple[list[int], np.ndarray] | None = None,
    ):
        self.encoder = encoder.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.resample = resample if resample is not None and len(resample[0]) else None
        self.shift = self.scale = None
        if normalization is not None:
            self.shift = np.asarray(normalization["mean"], np.float32)
            self.scale = np.asarray(normalization["std"], np.float32)
        space = spaces.Box(-np.inf, np.inf, shape=(encoder.latent_dim,), dtype=np.float32)
        super().__init__(venv, observation_space=space)

    @staticmethod
    @torch.no_grad()
    def encode_with(encoder: torch.nn.Module, frames: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
        """The policy's latents of uint8 frames, before any normalisation."""
        return encoder.representation(frames_to_tensor(frames, device)).cpu().numpy().astype(np.float32)

    def encode(self, frames: np.ndarray) -> np.ndarray:
        codes = self.encode_with(self.encoder, frames, self.device)
        if self.resample is not None:
            latents, pool = self.resample
            drawn = np.random.randint(len(pool), size=(len(codes), len(latents)))
            codes[:, latents] = pool[drawn, latents]
        if self.shift is not None:
            codes = np.clip((codes - self.shift) / self.scale, -self.CLIP, self.CLIP)
        return codes

    def reset(self) -> np.ndarray:
        return self.encode(self.venv.reset())

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        terminal = [i for i, info in enumerate(infos) if "terminal_observation" in info]
        batch = (
            obs
            if not terminal
            else np.concatenate([obs, np.stack([infos[i]["terminal_observation"] for i in terminal])])
        )
        codes = self.encode(batch)
        for j, i in enumerate(terminal):
            infos[i]["terminal_observation"] = codes[len(obs) + j]
        return codes[: len(obs)], rewards, dones, infos


class StateObservation(gym.Wrapper):
    """Replace each frame by the env's ground-truth task state: the oracle's observation.

    The env opts in by declaring ``state_space`` (a Box) and reporting ``info["state"]`` on every
    reset and step (CollectGoodObjects does). It wraps a DomainMixture inside each vector-env
    worker, so terminal observations are states too.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        inner = env.envs[env.names[0]] if hasattr(env, "envs") else env  # a DomainMixture: its first domain's env
        try:
            space = inner.get_wrapper_attr("state_space")  # on any wrapper of the chain, or the env itself
        except AttributeError:
            space = None
        if not isinstance(space, spaces.Box):
            raise ValueError(
                f"{type(inner.unwrapped).__name__} (through {inner}) reports no ground-truth state: the "
                f"oracle baseline needs a `state_space` Box attribute on the env or one of its wrappers, "
                f"and info['state'] on reset and step"
            )
        self.observation_space = space

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        if "state" not in info:
            raise ValueError(
                f"{type(self.env.unwrapped).__name__} declares a state_space but its reset info has no "
                f"'state' (keys: {sorted(info)}); the oracle needs info['state'] on reset and step"
            )
        return info["state"], info

    def step(self, action):
        _, reward, terminated, truncated, info = self.env.step(action)
        return info["state"], reward, terminated, truncated, info


def check_state(domain) -> None:
    """Refuse, in this process and before any training, a domain whose env cannot give the oracle its state."""
    from envs.domains import DomainMixture

    env = DomainMixture([domain])
    try:
        StateObservation(env).reset(seed=0)
    finally:
        env.close()
