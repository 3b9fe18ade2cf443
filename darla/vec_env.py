"""Vector environments over domains, for collection, training and evaluation."""

from __future__ import annotations

import multiprocessing
from typing import Sequence

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecMonitor

from darla.latent_env import LatentObservation, StateObservation
from envs.domains import Domain, DomainMixture, stack_factors


class _MixtureFactory:
    """Picklable env constructor for subprocess workers."""

    def __init__(self, domains: Sequence[Domain], state: bool, worker: bool, weights: dict | None = None):
        self.domains, self.state, self.worker, self.weights = list(domains), state, worker, weights

    def __call__(self) -> DomainMixture | StateObservation:
        # Each worker is a fresh process: cap its torch threads so workers do not fight the
        # learner for the cores, and let `envs` switch pyglet to headless EGL before Miniworld.
        # In this process (dummy), leave them: the learner's thread count decides its float
        # reduction order, and a resumed run must train with the same one as an uninterrupted run.
        if self.worker:
            import torch

            torch.set_num_threads(1)
        mixture = DomainMixture(self.domains, self.weights)
        return StateObservation(mixture) if self.state else mixture


def make_vec_env(
    domains: Sequence[Domain],
    num_envs: int,
    kind: str = "subprocess",
    seed: int | None = None,
    encoder: torch.nn.Module | None = None,
    device: torch.device | str = "cpu",
    state: bool = False,
    normalization: dict | None = None,
    resample: tuple[list[int], np.ndarray] | None = None,
    weights: dict[str, float] | None = None,
) -> VecEnv:
    """``num_envs`` copies of a mixture of ``domains`` (each episode plays one at random, some more
    often by ``weights``: see.domain_weights).

    ``kind="subprocess"`` runs each copy in its own forkserver process (fork hangs with OpenGL);
    ``"dummy"`` runs them in this process. Episode returns are tracked by VecMonitor. With an
    ``encoder``, observations are replaced by its frozen latent mean (see LatentObservation);
    (standardised by ``normalization``, some redrawn by ``resample``, if given); with ``state``, by
    the env's ground-truth task state (see StateObservation).
    """
    factories = [_MixtureFactory(domains, state, kind == "subprocess", weights) for _ in range(num_envs)]
    if kind == "subprocess":
        # A job run in a joblib worker (hydra/launcher=local_pool) has 'loky' as its global start
        # method; our workers would inherit that name and fail to start, as loky is not loaded there.
        if multiprocessing.get_start_method(allow_none=True) not in (None, *multiprocessing.get_all_start_methods()):
            multiprocessing.set_start_method("forkserver", force=True)
        try:
            venv: VecEnv = SubprocVecEnv(factories, start_method="forkserver")
        except (EOFError, ConnectionError) as err:
            # A worker died building its env; SB3 only sees the broken pipe. Build the same env here,
            # so that the user gets the worker's own exception rather than a ConnectionResetError.
            _MixtureFactory(domains, state, False, weights)().close()
            raise RuntimeError(
                f"an env worker died while building domains {[d.name for d in domains]} "
                f"({type(err).__name__}), though they build in this process; see the worker's "
                f"output above"
            ) from err
    elif kind == "dummy":
        venv = DummyVecEnv(factories)
    else:
        raise ValueError(f"vec_env={kind!r} is not known; expected 'subprocess' or 'dummy'")
    if seed is not None:
        venv.seed(seed)
    venv = VecMonitor(venv)
    return LatentObservation(venv, encoder, device, normalization, resample) if encoder is not None else venv


def collect_frames(
    vision_domains: Sequence[Domain],
    n_frames: int,
    num_envs: int,
    vec_env: str,
    seed: int,
    factors: bool = True,
    weights: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """Frames from a random policy over a vector env, with each frame's domain, episode and (unless
    not ``factors``) ground-truth factors, and the env's task state (``info["state"]``) when it
    reports one (for the task probe). Episodes draw their domain uniformly, or by ``weights``."""
    venv = make_vec_env(vision_domains, num_envs, vec_env, seed, weights=weights)
    names = [d.name for d in vision_domains]
    venv.action_space.seed(seed)
    keep_factors = factors
    frames, domain_ids, episode_ids, factors, states = [], [], [], [], []
    episode = np.arange(num_envs)  # each worker's current episode, numbered in the order they start
    obs = venv.reset()
    infos = list(venv.unwrapped.reset_infos)
    try:
        while len(frames) < n_frames:
            for worker, (frame, info) in enumerate(zip(obs, infos)):
                frames.append(frame)
                domain_ids.append(names.index(info["domain"]))
                episode_ids.append(episode[worker])
                factors.append(info.get("factors", {}))
                states.append(info.get("state"))
            actions = np.stack([venv.action_space.sample() for _ in range(num_envs)])
            obs, _, dones, step_infos = venv.step(actions)
            # A finished episode's env was reset: the new frame belongs with its reset info.
            infos = [venv.unwrapped.reset_infos[i] if done else step_infos[i] for i, done in enumerate(dones)]
            for worker in np.flatnonzero(dones):
                episode[worker] = episode.max() + 1
    finally:
        venv.close()
    data = {
        "frames": np.stack(frames[:n_frames]),
        "domain": np.array(domain_ids[:n_frames], np.int16),
        "episode": np.array(episode_ids[:n_frames], np.int32),
    }
    if keep_factors and factors[0]:
        data.update({f"factor_{k}": v for k, v in stack_factors(factors[:n_frames]).items()})
    states = states[:n_frames]
    if all(s is not None for s in states) and len({np.shape(s) for s in states}) == 1:
        data["state"] = np.stack(states).astype(np.float32)
    return data
