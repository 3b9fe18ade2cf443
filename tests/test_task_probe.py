"""The task probe's oracle tests: the state itself scores about 1, a constant code scores chance (0),
and a code with one quantity taken out loses exactly that quantity."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from darla.probe import TaskProbe
from vision_models.metrics.task_probe import (
    CLASSIFICATION,
    REGRESSION,
    Quantity,
    latent_importance,
    probe_scores,
    state_quantities,
)


def world(n: int, seed: int):
    """Three task quantities of n frames, and a code that holds each of them in its own latents."""
    rng = np.random.default_rng(seed)
    heading = rng.uniform(-np.pi, np.pi, n)
    distance = rng.uniform(0.1, 1.0, n)
    good = rng.integers(0, 2, n)
    visible = rng.random(n) < 0.7
    quantities = {
        "heading_cos": Quantity(REGRESSION, np.cos(heading)),
        "distance": Quantity(REGRESSION, distance, visible),
        "good": Quantity(CLASSIFICATION, good, visible),
    }
    code = np.stack([np.cos(heading), np.sin(heading), distance, good - 0.5, rng.normal(size=n)], axis=1)
    return code, quantities


def scores(code_of):
    train_code, train = world(2000, 0)
    test_code, test = world(500, 1)
    return probe_scores(code_of(train_code), train, {"heldout": (code_of(test_code), test)}, seed=0, num_train=2000)


def test_the_state_itself_scores_about_one():
    result = scores(lambda c: c)
    for name, entry in result["quantities"].items():
        assert entry["linear"]["heldout"] > 0.95 and entry["mlp"]["heldout"] > 0.95, name
    assert result["summary"]["heldout"] > 0.95


def test_a_constant_code_scores_chance():
    result = scores(lambda c: np.zeros_like(c))
    for name, entry in result["quantities"].items():
        assert entry["linear"]["heldout"] < 0.02 and entry["mlp"]["heldout"] < 0.02, name
    assert result["summary"]["heldout"] < 0.02


@pytest.mark.parametrize("removed, columns", [("heading_cos", [0]), ("distance", [2]), ("good", [3])])
def test_a_code_without_one_quantity_loses_exactly_that_one(removed, columns):
    result = scores(lambda c: np.delete(c, columns, axis=1))
    for name, entry in result["quantities"].items():
        if name == removed:
            assert entry["mlp"]["heldout"] < 0.1, name
        else:
            assert entry["mlp"]["heldout"] > 0.9, name


def test_state_quantities_are_the_varying_dimensions_and_undefined_splits_score_none():
    states = np.stack([np.linspace(0, 1, 50), np.ones(50)], axis=1)
    assert list(state_quantities(states)) == ["state_0"]
    quantities = {"q": Quantity(REGRESSION, np.linspace(0, 1, 50))}
    few = {"q": Quantity(REGRESSION, np.linspace(0, 1, 50), np.arange(50) < 3)}
    result = probe_scores(states, quantities, {"few": (states, few)})
    assert result["quantities"]["q"]["mlp"]["few"] is None and result["summary"]["few"] is None


def test_latent_importance_finds_the_latents_no_quantity_needs():
    train_code, train = world(2000, 0)
    test_code, test = world(500, 1)
    importance = latent_importance(train_code, train, test_code, test, seed=0, num_train=2000)
    needed = np.max(np.stack(list(importance.values())), axis=0)
    # Latents: cos(heading), sin(heading), distance, good, noise. sin is redundant with cos for the
    # probe of cos only through the circle, so only the noise latent must score about 0.
    assert needed[4] < 0.01
    assert needed[0] > 0.1 and needed[2] > 0.1 and needed[3] > 0.1
    assert importance["heading_cos"][2] < 0.01 and importance["distance"][0] < 0.01


@pytest.mark.parametrize("vision_model", ["pixels", "darla_ft"])
def test_the_features_of_an_encoder_trained_by_rl_are_probed(quick_run, tmp_path, vision_model):
    from conftest import check_ok, run_cli, tiny_act_args
    from darla.artifacts import read_json

    runs = tmp_path / "runs"
    args = [
        "act",
        *tiny_act_args(runs, quick_run.see, "probed", targets="[heldout_pairing,distractors]"),
        f"vision_model={vision_model}",
    ]
    made = {p: p.stat().st_mtime_ns for p in (quick_run.see / "probe_frames").glob("*.npz")}
    proc = check_ok(run_cli(*args, cwd=tmp_path, timeout=300))
    # DARLA_FT reads its see run's target frames: those made before (for other settings: here the
    # episode length differs) are kept, never rewritten.
    assert all(p.stat().st_mtime_ns == t for p, t in made.items())
    probe = read_json(runs / "probed" / "act" / "metrics.json")["task_probe"]
    assert len(probe["quantities"]) == 8
    targets = {s for s in probe["summary"] if not s.startswith("heldout_episodes/")}
    assert targets == {"heldout_episodes", "heldout_pairing", "distractors"} and probe["heldout_by_domain"]
    assert 0 <= probe["heldout"] <= 1 and 0 <= probe["targets"] <= 1
    assert "task probe of the policy's features" in proc.stdout
    # The pixel agent has no see run: its probe's frames are its own; DARLA_FT reads its vision's.
    assert (runs / "probed" / "act" / "probe_exploration.npz").exists() == (vision_model == "pixels")


def test_collect_good_objects_quantities_of_no_frames_are_empty():
    from envs.collect_good_objects import task_quantities

    quantities = task_quantities(np.zeros((0, 29), np.float32))  # a split without frames (few episodes)
    assert len(quantities) == 8 and all(len(q.values) == 0 for q in quantities.values())


def test_a_class_seen_once_leaves_its_quantity_unscored_rather_than_failing():
    code = np.random.default_rng(0).normal(size=(100, 3))
    rare = np.zeros(100, int)
    rare[7] = 1  # one frame of the other class: no stratified split can hold it out
    result = probe_scores(
        code, {"rare": Quantity(CLASSIFICATION, rare)}, {"test": (code, {"rare": Quantity(CLASSIFICATION, rare)})}
    )
    assert result["quantities"]["rare"]["mlp"] == {} and result["summary"]["test"] is None


def test_the_probe_per_room_finds_the_room_whose_frames_hide_the_task():
    """Held-out episodes scored per vision domain: a code that carries the state in room a and noise in
    room b reads the task in a only; ``source`` is the mean over the source rooms (here a); a room with
    no held-out episode (c: one episode) gets no split instead of failing."""
    rng = np.random.default_rng(0)
    episodes = 60
    episode = np.repeat(np.arange(episodes), 40)  # every 4th episode is held out
    domain = np.where(episode == 0, 2, np.array([0, 0, 1])[episode % 3])  # c: one episode, not held out
    state = rng.uniform(-1, 1, (len(domain), 3))
    frames = np.concatenate([state, domain[:, None]], axis=1)  # what the frame shows: the state and the room

    def represent(frames):  # room b's frames show no task: its code is noise
        return np.where(frames[:, 3:] == 1, rng.uniform(-1, 1, (len(frames), 3)), frames[:, :3])

    cfg = OmegaConf.create(
        {
            "probe": {"heldout_every": 4, "seed": 0, "num_train": 5000, "hidden": 32},
            "env": {"source": ["room_a"]},
        }
    )
    probe = TaskProbe.of_frames(
        {"frames": frames, "state": state, "episode": episode, "domain": domain},
        None,
        cfg,
        ["room_a", "room_b", "room_c"],
    )
    result = probe.scores(represent)
    assert set(result["heldout_by_domain"]) == {"room_a", "room_b"}  # c had no held-out episode
    assert result["heldout_by_domain"]["room_a"] > 0.8 and result["heldout_by_domain"]["room_b"] < 0.1
    assert result["source"] == result["heldout_by_domain"]["room_a"]
    assert result["heldout_by_domain"]["room_b"] < result["heldout"] < result["heldout_by_domain"]["room_a"]
