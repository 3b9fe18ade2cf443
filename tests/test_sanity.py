"""Sanity flags (darla/sanity.py) raised by constructed degenerate results and not by healthy ones;
the oracle's state found through a wrapper; env ids of packages that register on import."""

from __future__ import annotations

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from darla.artifacts import read_json, write_jsonl
from darla.latent_env import StateObservation, check_state
from darla.sanity import episode_flags, interval_flags, seed_flags, vision_flags
from darla.transfer import summarize
from darla.vision_report import diagnose
from envs.domains import Domain, DomainMixture, registered_id
from vision_models import BetaVAE


def episodes(returns_by_domain: dict[str, list[float]], random: list[float] | None = None) -> list[dict]:
    rows = []
    for i, (domain, returns) in enumerate(returns_by_domain.items()):
        role = "source" if i == 0 else "target"
        for seed, r in enumerate(returns):
            rows.append({"domain": domain, "role": role, "policy": "policy", "seed": seed, "return": r, "length": 10})
            if random is not None:
                rows.append(
                    {
                        "domain": domain,
                        "role": role,
                        "policy": "random",
                        "seed": seed,
                        "return": random[seed],
                        "length": 10,
                    }
                )
    return rows


HEALTHY = episodes({"a": [2.0, 3.0, 1.0], "b": [1.0, 0.0, 2.0]}, random=[0.0, -1.0, 1.0])


def test_a_healthy_run_raises_no_flag():
    assert episode_flags(HEALTHY) == {}
    assert seed_flags({0: {"a": 1.0}, 1: {"a": 2.0}}) == {}
    assert interval_flags({"seeds": 3, "source": {"ci_low": 0.5, "ci_high": 1.0}}, ["source"]) == {}
    assert vision_flags([0.5, 0.002, 1.3], stochastic=True, input_std=0.2, reconstruction_std=0.15) == {}


def test_each_episode_flag_is_raised_by_the_run_that_has_it():
    same = episodes({"a": [1.0, 0.0, 1.0], "b": [1.0, 0.0, 1.0], "c": [1.0, 0.0, 1.0]}, random=[0.0, 0.0, 0.0])
    assert set(episode_flags(same)) == {"identical_across_domains"}
    below = episodes({"a": [0.0, 0.0, 1.0], "b": [1.0, 2.0, 0.0]}, random=[1.0, 0.0, 1.0])
    assert set(episode_flags(below)) == {"at_or_below_random_on_source"}
    flat = episodes({"a": [0.0, 0.0], "b": [0.0, 0.0]}, random=[-1.0, -0.5])
    assert set(episode_flags(flat)) == {"identical_across_domains", "zero_spread"}
    assert set(seed_flags({0: {"a": 1.0, "b": 0.5}, 1: {"a": 1.0, "b": 0.5}})) == {"identical_across_seeds"}
    assert set(interval_flags({"seeds": 2, "source": {"ci_low": 0.3, "ci_high": 0.3}}, ["source"])) == {
        "degenerate_interval"
    }
    assert interval_flags({"seeds": 1, "source": {"ci_low": 0.3, "ci_high": 0.3}}, ["source"]) == {}


def test_the_transfer_report_prints_its_flags(tmp_path):
    write_jsonl(tmp_path / "episodes.jsonl", episodes({"a": [0.0, 0.0], "b": [0.0, 0.0]}, random=[1.0, 1.0]))
    summary = summarize(tmp_path)
    assert set(summary["flags"]) == {"at_or_below_random_on_source", "identical_across_domains", "zero_spread"}
    assert set(read_json(tmp_path / "summary.json")["flags"]) == set(summary["flags"])
    report = (tmp_path / "report.md").read_text()
    assert "Warnings:" in report and "**identical_across_domains**" in report
    write_jsonl(tmp_path / "episodes.jsonl", HEALTHY)
    assert summarize(tmp_path)["flags"] == {} and "Warnings" not in (tmp_path / "report.md").read_text()


def test_a_vision_that_ignores_its_input_is_flagged_by_diagnose(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(64, 64, 64, 3), dtype=np.uint8)
    dead = BetaVAE(latent_dim=4)
    with torch.no_grad():
        for p in dead.parameters():
            p.zero_()  # the code is the same for every frame, and so is the reconstruction
    diagnose(dead, tmp_path, {"frames": frames}, None, None, torch.device("cpu"), 0)
    flags = read_json(tmp_path / "latents.json")["flags"]
    assert set(flags) == {"latents_all_inactive", "reconstructions_input_independent"}
    assert set(vision_flags([0.0, 0.0], stochastic=False)) == {"latents_all_inactive"}


class Pixels(gym.Env):
    """Image observations, and nothing else."""

    observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {"position": 0.0}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {"position": float(action)}


class WithState(gym.Wrapper):
    """A user's wrapper that declares the state and reports it."""

    def __init__(self, env):
        super().__init__(env)
        self.state_space = spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "state": np.array([info["position"]], np.float32)}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "state": np.array([info["position"]], np.float32)}


gym.register("sanity_test/Pixels-v0", entry_point=Pixels)
gym.register("sanity_test/PixelsWithState-v0", entry_point=lambda: WithState(Pixels()))


def test_the_oracle_finds_the_state_on_a_wrapper_and_refuses_an_env_without_one():
    env = StateObservation(DomainMixture([Domain("plain", "sanity_test/PixelsWithState-v0")]))
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (1,) and obs.shape == (1,)
    check_state(Domain("plain", "sanity_test/PixelsWithState-v0"))
    with pytest.raises(
        ValueError,
        match=r"Pixels .*reports no ground-truth state: the oracle baseline needs a "
        r"`state_space` Box attribute on the env or one of its wrappers",
    ):
        check_state(Domain("plain", "sanity_test/Pixels-v0"))


def test_a_stock_id_of_a_package_that_registers_on_import_is_found():
    # in a fresh interpreter, where nothing has imported miniworld yet
    code = "from envs.domains import registered_id; print(registered_id('MiniWorld-OneRoomS6-v0'))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert found.strip().splitlines()[-1] == "miniworld:MiniWorld-OneRoomS6-v0"
    with pytest.raises(
        ValueError,
        match=r"env id 'CartPol-v1' is not registered with Gymnasium\. If a package of "
        r"yours registers it when imported, write env.id=<package>:CartPol-v1",
    ) as err:
        registered_id("CartPol-v1")
    assert "Did you mean" not in str(err.value)


def test_importing_darla_switches_miniworld_to_headless():
    code = "import darla, pyglet; print(pyglet.options['headless'])"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "True"
    )


def test_an_env_that_fails_in_a_worker_raises_its_own_error():
    from darla.vec_env import make_vec_env

    broken = Domain("broken", "darla/CollectGoodObjects-v0", {"object_set": "nope"})
    with pytest.raises(ValueError, match=r"CollectGoodObjects: unknown object_set 'nope'"):
        make_vec_env([broken], 1, "subprocess", 0)
