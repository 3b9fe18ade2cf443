"""LatentObservation: the policy's view, every env's frame encoded in one batch by the frozen encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import VecEnvWrapper

from darla.latent_env import LatentObservation, frames_to_tensor
from darla.vec_env import make_vec_env
from envs import COLLECT_GOOD_OBJECTS
from envs.domains import Domain
from vision_models import BetaVAE

STEPS = 4  # episode length: every env finishes within the test
DOMAINS = [
    Domain("hat_can_default", COLLECT_GOOD_OBJECTS, {"object_set": "hat_can", "max_episode_steps": STEPS}),
    Domain(
        "cake_balloon_alternative",
        COLLECT_GOOD_OBJECTS,
        {"object_set": "cake_balloon", "room_style": "alternative", "max_episode_steps": STEPS},
    ),
]


class RecordFrames(VecEnvWrapper):
    """Pass-through that keeps a copy of the raw frames (and terminal frames) it hands upwards."""

    def reset(self):
        self.frames = self.venv.reset().copy()
        return self.frames

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.frames = obs.copy()
        self.terminal = {
            i: info["terminal_observation"].copy() for i, info in enumerate(infos) if "terminal_observation" in info
        }
        return obs, rewards, dones, infos


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    model = BetaVAE((3, 64, 64), latent_dim=4)
    model.train()  # the wrapper, not the caller, must freeze it
    return model


def one_by_one(encoder, frames: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.stack([encoder.encode(frames_to_tensor(f[None]))[0][0].numpy() for f in frames])


def test_batched_encoding_equals_encoding_each_frame(encoder):
    recorder = RecordFrames(make_vec_env(DOMAINS, 3, "dummy", seed=0))
    venv = LatentObservation(recorder, encoder)
    assert venv.observation_space.shape == (4,) and venv.observation_space.dtype == np.float32
    codes = venv.reset()
    assert codes.shape == (3, 4) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, one_by_one(encoder, recorder.frames), rtol=1e-5, atol=1e-6)
    assert not np.allclose(codes[0], codes[1]) or not np.array_equal(recorder.frames[0], recorder.frames[1])
    seen_terminal = 0
    rng = np.random.default_rng(0)
    for _ in range(2 * STEPS):
        codes, rewards, dones, infos = venv.step(rng.integers(3, size=3))
        np.testing.assert_allclose(codes, one_by_one(encoder, recorder.frames), rtol=1e-5, atol=1e-6)
        # A finished episode's last frame (which PPO bootstraps from) is encoded too.
        assert sorted(recorder.terminal) == np.flatnonzero(dones).tolist()
        for i, frame in recorder.terminal.items():
            latent = infos[i]["terminal_observation"]
            assert latent.shape == (4,)
            np.testing.assert_allclose(latent, one_by_one(encoder, frame[None])[0], rtol=1e-5, atol=1e-6)
            seen_terminal += 1
        # An episode's info still names its domain.
        assert all(info["domain"] in {d.name for d in DOMAINS} for info in infos)
    assert seen_terminal >= 3  # every env finished at least once
    venv.close()


def test_encoder_is_frozen_in_eval_mode(encoder):
    venv = make_vec_env(DOMAINS, 2, "dummy", seed=1, encoder=encoder)
    assert isinstance(venv, LatentObservation)
    assert not encoder.training and not any(m.training for m in encoder.modules())
    assert not any(p.requires_grad for p in encoder.parameters())
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    codes = venv.reset()
    for _ in range(STEPS + 1):
        codes, *_ = venv.step(np.array([2, 0]))
    assert all(p.grad is None for p in encoder.parameters())
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    venv.close()


def test_latent_codes_are_the_encoder_mean_not_a_sample(encoder):
    venv = make_vec_env(DOMAINS[:1], 2, "dummy", seed=5, encoder=encoder)
    first = venv.reset()
    venv.seed(5)
    again = venv.reset()  # same seeds, same frames: a sampled code would differ
    np.testing.assert_array_equal(first, again)
    venv.close()


def test_resampled_latents_come_from_the_pool_and_normalisation_follows(encoder):
    pool = np.arange(40, dtype=np.float32).reshape(10, 4) * 100.0  # codes no frame gives
    recorder = RecordFrames(make_vec_env(DOMAINS, 3, "dummy", seed=0))
    normalization = {"mean": [1.0, 2.0, 3.0, 4.0], "std": [0.5, 1.0, 2.0, 1000.0]}
    venv = LatentObservation(recorder, encoder, normalization=normalization, resample=([1, 3], pool))
    np.random.seed(0)
    for step in range(4):
        codes = venv.reset() if step == 0 else venv.step(np.array([0, 1, 2]))[0]
        raw = one_by_one(encoder, recorder.frames)
        expected = np.clip((raw - normalization["mean"]) / normalization["std"], -10, 10)
        np.testing.assert_allclose(codes[:, [0, 2]], expected[:, [0, 2]], rtol=1e-5, atol=1e-5)
        # The redrawn latents hold pool values (standardised), in the pool's own column.
        for column in (1, 3):
            drawn = codes[:, column] * normalization["std"][column] + normalization["mean"][column]
            clipped = np.abs(codes[:, column]) == 10
            assert np.all(clipped | np.isin(np.round(drawn), pool[:, column])), column
    venv.close()
