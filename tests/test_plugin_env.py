"""Plugging in any Gymnasium environment: appearance shifts, env checks, and the README's walk-through.

The walk-through (a MiniGrid room darla does not ship, registered by the user's own module, with
a factor dataset and shifted domains) is run from the README's own code blocks and commands, at
the quick preset's budget, through the real CLI with forkserver workers.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium import spaces

from conftest import SHIFTS, check_ok, compose_cfg, output
from darla.config import domain_settings, domains, shift_targets
from envs.checks import check_domain
from envs.domains import Domain, domains_from_config
from envs.shifts import apply_shifts

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Your own environment"
ENV_CONFIG = "my_configs/env/empty_room.yaml"


# -- shifts on a synthetic frame ----------------------------------------------------------------

BACKGROUND = (30, 30, 30)


def synthetic_frame() -> np.ndarray:
    """A 64x64 frame: a uniform background, a red square and a patch of random colours."""
    frame = np.empty((64, 64, 3), np.uint8)
    frame[:] = BACKGROUND
    frame[8:20, 8:20] = (255, 0, 0)
    frame[30:46, 30:46] = np.random.default_rng(0).integers(0, 256, (16, 16, 3))
    return frame


class FrameEnv(gym.Env):
    """Shows one fixed frame (or any observation ``space`` asks for); acts in ``action_space``."""

    def __init__(
        self,
        frame: np.ndarray | None = None,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
    ):
        self.frame = synthetic_frame() if frame is None else frame
        self.observation_space = observation_space or spaces.Box(0, 255, self.frame.shape, np.uint8)
        self.action_space = action_space or spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.frame.copy(), {}

    def step(self, action):
        return self.frame.copy(), 0.0, False, False, {}


FRAME_ENV_ID = "darla_test/Frame-v0"
if FRAME_ENV_ID not in gym.registry:
    gym.register(FRAME_ENV_ID, entry_point=FrameEnv)


def shifted(name: str, frame: np.ndarray | None = None, seed: int = 0, **kwargs) -> np.ndarray:
    env = apply_shifts(FrameEnv(frame), {name: kwargs}, SHIFTS)
    return env.reset(seed=seed)[0]


ARGUMENTS = {
    "tint": {"rgb": [0, 0, 255]},
    "hue": {},
    "channel_permutation": {"permutation": "brg"},
    "brightness_contrast": {"brightness": 0.3, "contrast": 1.5},
    "background_noise": {},
}


@pytest.mark.parametrize("name", sorted(SHIFTS))
def test_intensity_zero_is_the_identity_and_the_shift_grows_with_intensity(name):
    frame = synthetic_frame()
    env = apply_shifts(FrameEnv(frame), {name: {"intensity": 0.0, **ARGUMENTS[name]}}, SHIFTS)
    assert env.observation(frame) is frame
    distances = [
        np.abs(shifted(name, frame, intensity=t, **ARGUMENTS[name]).astype(int) - frame).mean()
        for t in (0.0, 0.25, 0.5, 0.75, 1.0)
    ]
    assert distances[0] == 0 and np.all(np.diff(distances) > 0), distances


def test_shifts_give_the_expected_pixel_values():
    frame = np.zeros((4, 4, 3), np.uint8)
    frame[0, 0], frame[0, 1], frame[0, 2], frame[0, 3] = (255, 0, 0), (77, 77, 77), (100, 60, 199), (10, 20, 30)

    def pixels(name: str, **kwargs) -> np.ndarray:
        return shifted(name, frame, **kwargs)[0]

    # Tint: halfway to blue at intensity 1 (max_blend 0.5), a quarter at 0.5.
    assert pixels("tint", intensity=1.0, rgb=[0, 0, 255])[2].tolist() == [50, 30, 227]
    assert pixels("tint", intensity=0.5, rgb=[0, 0, 255])[2].tolist() == [75, 45, 213]
    # Hue: 120 degrees turns red into green, 180 into the clipped complement; greys stay.
    assert pixels("hue", intensity=2 / 3)[0].tolist() == [0, 255, 0]
    assert pixels("hue", intensity=1.0)[0].tolist() == [0, 170, 170]
    assert pixels("hue", intensity=0.37)[1].tolist() == [77, 77, 77]
    # Channel permutation "brg": red <- blue, green <- red, blue <- green; 0.5 averages.
    assert pixels("channel_permutation", intensity=1.0, permutation="brg")[3].tolist() == [30, 10, 20]
    assert pixels("channel_permutation", intensity=0.5, permutation="brg")[3].tolist() == [20, 15, 25]
    # Brightness halves; contrast 3 stretches about mid-grey: (100 - 127.5) * 3 + 127.5 = 45.
    assert pixels("brightness_contrast", intensity=1.0, brightness=0.5)[0].tolist() == [128, 0, 0]
    assert pixels("brightness_contrast", intensity=1.0, brightness=1.0, contrast=3.0)[2].tolist() == [45, 0, 255]


def test_background_noise_touches_only_the_background_and_replays_with_the_seed():
    frame = synthetic_frame()
    background = np.all(frame == BACKGROUND, axis=2)
    env = apply_shifts(FrameEnv(frame), {"background_noise": {"intensity": 0.5, "max_amplitude": 64}}, SHIFTS)
    first = [env.reset(seed=7)[0]] + [env.step(0)[0] for _ in range(2)]
    again = [env.reset(seed=7)[0]] + [env.step(0)[0] for _ in range(2)]
    other = env.reset(seed=8)[0]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[0], other)
    obs = first[0]
    np.testing.assert_array_equal(obs[~background], frame[~background])  # the objects are untouched
    change = obs[background].astype(int) - frame[background]
    assert np.abs(change).max() <= 32 and (change != 0).mean() > 0.9  # noise up to +-0.5 * 64
    # An explicit background colour: noise on the red square only.
    red = apply_shifts(FrameEnv(frame), {"background_noise": {"intensity": 1.0, "background_rgb": [255, 0, 0]}}, SHIFTS)
    obs = red.reset(seed=0)[0]
    square = np.all(frame == (255, 0, 0), axis=2)
    np.testing.assert_array_equal(obs[~square], frame[~square])
    assert (obs[square] != frame[square]).any()


def test_unknown_shifts_and_bad_arguments_are_refused_by_name():
    with pytest.raises(
        ValueError,
        match=r"domain 'hue_half': unknown shift 'hues' under wrappers; "
        r"known shifts: \['background_noise', 'brightness_contrast', "
        r"'channel_permutation', 'hue', 'tint'\]",
    ):
        domains_from_config(
            "CartPole-v1",
            {},
            {"hue_half": {"wrappers": {"hues": {"intensity": 0.5}}}},
            ["hue_half"],
            "targets",
            None,
            SHIFTS,
        )
    with pytest.raises(ValueError, match=r"unknown shift 'blur'; known shifts: \["):
        apply_shifts(FrameEnv(), {"blur": {"intensity": 1.0}}, SHIFTS)
    with pytest.raises(ValueError, match=r"HueRotation: intensity must lie in \[0, 1\], got 1.5"):
        apply_shifts(FrameEnv(), {"hue": {"intensity": 1.5}}, SHIFTS)
    with pytest.raises(ValueError, match=r"shift 'tint': bad arguments \{'intensity': 0.5, 'colour'"):
        apply_shifts(FrameEnv(), {"tint": {"intensity": 0.5, "colour": [1, 2, 3]}}, SHIFTS)
    with pytest.raises(ValueError, match=r"permutation must reorder the letters 'rgb'"):
        apply_shifts(FrameEnv(), {"channel_permutation": {"intensity": 1.0, "permutation": "rgx"}}, SHIFTS)
    vector = FrameEnv(np.zeros(4, np.uint8), observation_space=spaces.Box(0, 255, (4,), np.uint8))
    with pytest.raises(ValueError, match=r"ColourTint shifts uint8 RGB frames \(H, W, 3\)"):
        apply_shifts(vector, {"tint": {"intensity": 0.5}}, SHIFTS)


def test_env_and_domain_wrappers_are_applied_in_order_and_belong_to_the_settings():
    table = {"plain": {}, "blue": {"size": 6, "wrappers": {"tint": {"intensity": 1.0, "rgb": [0, 0, 255]}}}}
    common = {"channel_permutation": {"intensity": 1.0, "permutation": "bgr"}}
    plain, blue = domains_from_config("some/Env-v0", {"size": 5}, table, ["plain", "blue"], "targets", common, SHIFTS)
    assert plain.kwargs == {"size": 5} and list(plain.wrappers) == ["channel_permutation"]
    assert blue.kwargs == {"size": 6} and list(blue.wrappers) == ["channel_permutation", "tint"]
    # Domain.make applies them in order: red becomes blue, then is tinted halfway to blue
    # (the other order would give [128, 0, 128]).
    red = np.full((2, 2, 3), (255, 0, 0), np.uint8)
    env = Domain("blue", FRAME_ENV_ID, {"frame": red}, blue.wrappers, SHIFTS).make()
    assert env.reset()[0][0, 0].tolist() == [0, 0, 255]
    settings = domain_settings([plain, blue])
    assert settings["blue"] == {"env_id": "some/Env-v0", "size": 6, "wrappers": {**common, **table["blue"]["wrappers"]}}
    # A domain without shifts keeps the settings it had before shifts existed (finished runs stay finished).
    assert domain_settings([Domain("x", "some/Env-v0", {"size": 5})]) == {"x": {"env_id": "some/Env-v0", "size": 5}}


def test_a_shift_of_ones_own_is_one_class_and_one_yaml(tmp_path, monkeypatch):
    """No table to edit: the YAML's _target_ names the class, and any gymnasium wrapper will do."""
    (tmp_path / "my_shifts.py").write_text(
        "import gymnasium as gym\n\n"
        "class Invert(gym.ObservationWrapper):\n"
        "    def __init__(self, env, strength=1.0):\n"
        "        super().__init__(env)\n"
        "        self.strength = strength\n\n"
        "    def observation(self, frame):\n"
        "        return (255 - frame) if self.strength else frame\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_cfg("see", ["+shifts.invert={_target_: my_shifts.Invert}"])
    targets = shift_targets(cfg)
    assert targets["invert"] == "my_shifts.Invert" and set(SHIFTS) < set(targets)
    table = {"inverted": {"wrappers": {"invert": {"strength": 1.0}, "tint": {"intensity": 0.0}}}}
    [domain] = domains_from_config(FRAME_ENV_ID, {}, table, ["inverted"], "targets", None, targets)
    frame = synthetic_frame()
    assert (domain.make().reset()[0] == 255 - frame).all()
    with pytest.raises(ValueError, match=r"shift _target_ 'my_shifts.Nope' names no class"):
        Domain("x", FRAME_ENV_ID, {}, {"nope": {}}, {"nope": "my_shifts.Nope"}).make()
    with pytest.raises(ValueError, match=r"shift _target_ 'numpy.zeros' is not a gymnasium Wrapper class"):
        Domain("x", FRAME_ENV_ID, {}, {"zeros": {}}, {"zeros": "numpy.zeros"}).make()


# -- env checks ---------------------------------------------------------------------------------

IMAGE = spaces.Box(0, 255, (64, 64, 3), np.uint8)


@pytest.mark.parametrize(
    "observation_space, action_space, algorithm, problem",
    [
        (
            spaces.Dict({"image": IMAGE}),
            spaces.Discrete(3),
            "PPO",
            r"gives dict observations \(.*\); darla's vision expects one image per step",
        ),
        (
            spaces.Box(0, 1, (64, 64, 3), np.float32),
            spaces.Discrete(3),
            "PPO",
            r"gives images of dtype float32; darla expects uint8 frames",
        ),
        (
            spaces.Box(0, 255, (32, 32, 3), np.uint8),
            spaces.Discrete(3),
            "PPO",
            (
                r"gives images of shape \(H, W, C\) \(32, 32, 3\), that is \(C, H, W\) \[3, 32, 32\], but "
                r"env.observation_shape is \[3, 64, 64\]; vision models take their input_shape from "
                r"env.observation_shape"
            ),
        ),
        (
            IMAGE,
            spaces.Box(-1, 1, (2,)),
            "DQN",
            r"has action space Box\(.*\), which DQN cannot use; DQN acts in Discrete",
        ),
    ],
)
def test_envs_darla_cannot_use_are_refused(observation_space, action_space, algorithm, problem):
    domain = Domain("odd", FRAME_ENV_ID, {"observation_space": observation_space, "action_space": action_space})
    with pytest.raises(ValueError, match=rf"domain 'odd' \(env '{FRAME_ENV_ID}'\) " + problem):
        check_domain(domain, [3, 64, 64], algorithm)


def test_an_algorithm_without_known_action_spaces_is_refused():
    with pytest.raises(ValueError, match=r"agent.algorithm='A2C' is not known; expected one of \['DQN', 'PPO'\]"):
        check_domain(Domain("fine", FRAME_ENV_ID), [3, 64, 64], "A2C")


@pytest.mark.parametrize(
    "action_space, algorithm",
    [
        (spaces.Discrete(3), "DQN"),
        (spaces.Box(-1, 1, (2,)), "PPO"),
        (spaces.MultiDiscrete([3, 2]), "PPO"),
        (spaces.MultiBinary(4), "PPO"),
    ],
)
def test_envs_that_fit_pass(action_space, algorithm):
    check_domain(Domain("fine", FRAME_ENV_ID, {"action_space": action_space}), [3, 64, 64], algorithm)


def test_stages_check_the_first_domain_with_the_env_wrappers():
    """config.domains: env-level wrappers reach every domain, and the first domain's env is checked."""
    cfg = compose_cfg("act", ["+env.wrappers={hue: {intensity: 0.5}}", "env.source=[heldout_pairing,light_dim_0.6]"])
    listed = domains(cfg, "source")
    assert [dict(d.wrappers) for d in listed] == [{"hue": {"intensity": 0.5}}] * 2
    assert domain_settings(listed)["light_dim_0.6"]["wrappers"] == {"hue": {"intensity": 0.5}}
    narrow = compose_cfg("act", ["env.observation_shape=[3,64,48]"])
    with pytest.raises(
        ValueError,
        match=r"domain 'hat_can_default' \(env 'darla/CollectGoodObjects-v0'\) gives "
        r"images of shape \(H, W, C\) \(64, 64, 3\)",
    ):
        domains(narrow, "source")


# -- the README's walk-through ------------------------------------------------------------------


def readme_text() -> str:
    """The README's walk-through section (other sections run other commands)."""
    text = README.read_text()
    start = text.index(SECTION + "\n")
    end = text.find("\n## ", start + len(SECTION))
    return text[start : end if end != -1 else len(text)]


def indented_block_after(text: str, marker: str) -> str:
    """The 4-space indented block that follows the line ending with ``marker``."""
    lines = text[text.index(marker + "\n") :].split("\n")[1:]
    block = []
    for line in lines:
        if not (line.startswith("    ") or line == ""):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block)).strip("\n") + "\n"


def readme_commands(text: str, stage: str) -> list[list[str]]:
    """argv (after ``PYTHONPATH=.``) of every README command line running ``stage`` on the user's env."""
    commands = []
    for line in re.findall(rf"^    (PYTHONPATH=\. python -m darla\.stage {stage} .*)$", text, re.MULTILINE):
        env_prefix, *argv = shlex.split(line)
        assert env_prefix == "PYTHONPATH=." and argv[:3] == ["python", "-m", "darla.stage"]
        commands.append(argv)
    return commands


@pytest.fixture(scope="module")
def user_dir(tmp_path_factory) -> Path:
    """A user's folder with the README's my_envs.py and env config."""
    root = tmp_path_factory.mktemp("user")
    text = readme_text()
    (root / "my_envs.py").write_text(indented_block_after(text, "`my_envs.py`:"))
    (root / ENV_CONFIG).parent.mkdir(parents=True)
    (root / ENV_CONFIG).write_text(
        indented_block_after(text, f"`{ENV_CONFIG}`, in the style of configs/env/collect_good_objects.yaml:")
    )
    return root


def run_user_command(argv: list[str], user_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    """A README command as the user runs it in their folder: PYTHONPATH=. and the venv's python."""
    return subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=user_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "PYTHONPATH": str(user_dir), "PYTHONUNBUFFERED": "1"},
    )


def test_user_env_config_splits_targets_into_ood1_and_ood2(user_dir):
    cfg = yaml.safe_load((user_dir / ENV_CONFIG).read_text())
    source, vision, targets = set(cfg["source"]), set(cfg["vision"]), set(cfg["targets"])
    ood1, ood2 = set(cfg["target_groups"]["ood1"]), set(cfg["target_groups"]["ood2"])
    assert ood1 | ood2 == targets and not ood1 & ood2
    assert ood1 <= vision and not ood1 & source  # seen by the vision, not by the policy
    assert not ood2 & (vision | source)  # seen by neither
    graded = [n for n in cfg["domains"] if n.startswith("hue_")]
    assert len(graded) == 3 and {s for d in cfg["domains"].values() for s in d.get("wrappers", {})} == set(SHIFTS)


def test_user_factor_dataset_renders_the_frames_the_env_shows(user_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(user_dir))
    import my_envs

    dataset = my_envs.EmptyRoomFactors(size=5)
    env = gym.make("my_envs:EmptyRoomPixels-v0", disable_env_checker=True)
    rng = np.random.default_rng(0)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        for action in rng.integers(0, 3, 4):
            grid = env.unwrapped
            x, y = grid.agent_pos
            np.testing.assert_array_equal(dataset.render(np.array([[x - 1, y - 1, grid.agent_dir]]))[0], obs)
            obs, _, terminated, _, _ = env.step(int(action))
            if terminated:
                break
    env.close()


def test_readme_walkthrough_runs_see_act_transfer_with_metrics(user_dir, tmp_path):
    (command,) = [c for c in readme_commands(readme_text(), "all") if "experiment=quick" in c]
    runs = tmp_path / "runs"
    proc = check_ok(run_user_command([*command, f"runs_dir={runs}"], user_dir, timeout=900))
    run = runs / "quick_beta_vae_dae"
    config = yaml.safe_load((user_dir / ENV_CONFIG).read_text())

    # see: frames from the vision domains, made in forkserver workers that imported my_envs by id,
    # with the shifts applied there; metrics on the user's factor dataset.
    with np.load(run / "see" / "frames.npz") as data:
        frames, domain = data["frames"], data["domain"]
    assert frames.shape == (600, 64, 64, 3) and frames.dtype == np.uint8
    played = {name: frames[domain == i] for i, name in enumerate(config["vision"]) if (domain == i).any()}
    assert "plain" in played and len(played) >= 3
    for name, shown in played.items():  # the goal stays pure green only where no shift changes its colour
        goal_green = np.all(shown == (0, 255, 0), axis=3).any(axis=(1, 2))
        assert goal_green.all() if name in ("plain", "floor_noise_0.3") else not goal_green.any(), name
    metrics = json.loads((run / "see" / "metrics.json").read_text())
    assert metrics["factor_names"] == ["x", "y", "direction"] and metrics["factor_sizes"] == [3, 3, 4]
    assert set(metrics["metrics"]) == {"mig", "sap"}
    assert 0 <= metrics["metrics"]["mig"]["mig"] <= 1
    # The task probe, on the state the README's env reports: x, y and heading, scored on held-out
    # episodes and on each target domain's frames.
    probe = metrics["task_probe"]
    assert set(probe["quantities"]) == {"state_0", "state_1", "state_2"}
    by_domain = {f"heldout_episodes/{d}" for d in config["vision"]}  # held-out episodes per vision domain
    assert set(probe["summary"]) - by_domain == {"heldout_episodes", *config["targets"]}
    assert set(probe["summary"]) & by_domain
    assert 0 <= probe["heldout"] <= 1 and 0 <= probe["targets"] <= 1
    for name in config["targets"]:
        (path,) = (run / "see" / "probe_frames").glob(f"{name}-*.npz")
        with np.load(path) as data:
            assert data["state"].shape[1] == 3

    # act and transfer: every target domain played with the policy and a random one.
    assert json.loads((run / "act" / "manifest.json").read_text())["env_id"] == "my_envs:EmptyRoomPixels-v0"
    summary = json.loads((run / "transfer" / "summary.json").read_text())
    assert list(summary["domains"]) == config["source"] + config["targets"]
    settings = json.loads((run / "transfer" / "config.json").read_text())["domains"]
    assert settings["hue_1.0"] == {
        "env_id": "my_envs:EmptyRoomPixels-v0",
        "size": 5,
        "wrappers": {"hue": {"intensity": 1.0}},
    }
    assert "[transfer] done" in output(proc)


@pytest.mark.parametrize(
    "problem, expected",
    [
        (
            "env.id=CartPole-v1",
            (
                "darla see: error: domain 'plain' (env 'CartPole-v1') gives observations of shape (4,), not "
                "images; darla's vision expects image frames, uint8 of shape (H, W, C)"
            ),
        ),
        (
            "env.observation_shape=[3,32,32]",
            (
                "darla see: error: domain 'plain' (env 'my_envs:EmptyRoomPixels-v0') gives images "
                "of shape (H, W, C) (64, 64, 3), that is (C, H, W) [3, 64, 64], but "
                "env.observation_shape is [3, 32, 32]; vision models take their input_shape "
                "from env.observation_shape"
            ),
        ),
    ],
)
def test_readme_bad_envs_are_refused_on_the_command_line(user_dir, tmp_path, problem, expected):
    (command,) = [c for c in readme_commands(readme_text(), "see") if problem in c]
    runs = tmp_path / "runs"
    proc = run_user_command([*command, f"runs_dir={runs}"], user_dir, timeout=120)
    assert proc.returncode != 0
    assert expected in output(proc)
    assert not list(runs.rglob("config.json")) and not list(runs.rglob("frames.npz"))  # refused before any work


def test_readme_compare_runs_on_the_users_env(user_dir, tmp_path):
    (command,) = readme_commands(readme_text(), "compare")
    runs = tmp_path / "runs"
    proc = run_user_command([*command, f"runs_dir={runs}"], user_dir, timeout=1500)
    assert proc.returncode == 0, output(proc)[-6000:]
    root = runs / "compare_empty_room"
    for model in ("random_cnn", "pixels"):
        for seed in (0, 1):
            manifest = json.loads((root / model / f"seed{seed}" / "act" / "manifest.json").read_text())
            assert manifest["env_id"] == "my_envs:EmptyRoomPixels-v0"
    board = (root / "leaderboard.md").read_text()
    assert "| random_cnn" in board and "| pixels" in board
    assert "The random policy (uniform actions on the same episodes, 4 runs): source" in board
    rows = {r["vision_model"]: r for r in csv.DictReader(io.StringIO((root / "leaderboard.csv").read_text()))}
    assert set(rows) == {"random_cnn", "pixels", "random policy"} and rows["pixels"]["seeds"] == "2"
