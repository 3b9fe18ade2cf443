"""ICF: the selectivity formula, shapes, training on a controllable toy env, and the see / act stages."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from conftest import check_ok, run_cli, tiny_act_args
from darla.artifacts import read_json
from darla.vision_training import TransitionBatches, train_vision
from vision_models.icf import ICF, selectivity_scores

torch.set_num_threads(1)


class DotGrid(gym.Env):
    """A dot on an 8x8 torus drawn in a 64x64 frame: actions 0/1 move it right/left, 2/3 down/up.

    Each action changes one factor (x or y) and nothing else, always (no walls to push against):
    the oracle for selectivity.
    """

    observation_space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    action_space = gym.spaces.Discrete(4)
    cells, cell = 8, 8

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos, self.t = self.np_random.integers(self.cells, size=2), 0
        return self._frame(), {}

    def step(self, action):
        axis, sign = divmod(int(action), 2)
        self.pos[axis] = (self.pos[axis] + (1 if sign == 0 else -1)) % self.cells
        self.t += 1
        return self._frame(), 0.0, False, self.t >= 20, {}

    def _frame(self):
        frame = np.zeros((64, 64, 3), np.uint8)
        x, y = self.pos * self.cell
        frame[y : y + self.cell, x : x + self.cell] = 255
        return frame


def toy_batches(model, seed=0, **kwargs):
    venv = DummyVecEnv([DotGrid for _ in range(4)])
    venv.seed(seed)
    return TransitionBatches(venv, model, **kwargs)


def fresh_selectivity(model, seed: int, n: int = 512) -> np.ndarray:
    """Mean selectivity of latent k under pi_k on transitions the current policies collect."""
    batches = toy_batches(model, seed, replay_size=n, epsilon=0.0)
    batches.collect(n // 4, torch.Generator().manual_seed(seed), "cpu")
    return model.selectivity(batches.tensors(np.arange(batches.size), "cpu")).numpy()


def test_selectivity_formula_on_constructed_changes():
    delta = torch.tensor([[1.0, -1.0, 2.0], [0.0, 0.0, 0.0], [0.0, -3.0, 0.0]])
    expected = torch.tensor([[0.25, 0.25, 0.5], [0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert torch.allclose(selectivity_scores(delta), expected, atol=1e-6)

    # selectivity(): the importance-weighted mean of sel_k under pi_k. With a uniform behaviour (mu = 1/A)
    # and a policy head that is uniform too, every weight is 1: the plain mean of each latent's selectivity.
    model = ICF((3, 64, 64), latent_dim=3, num_actions=4)
    with torch.no_grad():
        for p in model.policy.parameters():
            p.zero_()
    codes = {}
    model.encode = lambda x: (codes[x.data_ptr()], None)
    obs, next_obs = torch.zeros(3, 3, 64, 64), torch.zeros(3, 3, 64, 64)
    codes[obs.data_ptr()], codes[next_obs.data_ptr()] = torch.zeros(3, 3), delta
    batch = {"obs": obs, "next_obs": next_obs, "action": torch.tensor([0, 1, 2]), "mu": torch.full((3,), 0.25)}
    assert torch.allclose(model.selectivity(batch), expected.mean(0), atol=1e-6)


def test_shapes_and_loss_terms():
    model = ICF((3, 64, 64), latent_dim=4, num_actions=4)
    x = torch.rand(5, 3, 64, 64)
    code, logvar = model.encode(x)
    assert code.shape == (5, 4) and logvar is None and model.decode(code).shape == x.shape
    assert model.policy_log_probs(code).shape == (5, 4, 4)
    actions, mu = model.act(x, torch.tensor([0, 1, 2, 3, 0]), 0.2, torch.Generator().manual_seed(0))
    assert actions.shape == mu.shape == (5,) and (mu >= 0.05).all()
    batches = toy_batches(model)
    batch = batches(8, torch.Generator().manual_seed(0), "cpu")
    assert batch["obs"].shape == batch["next_obs"].shape == (8, 3, 64, 64) and batches.size >= 8
    total, terms = model.loss(batch, 0)
    assert set(terms) == {"reconstruction", "selectivity", "entropy", "total"} and total.dim() == 0
    total.backward()
    assert model.policy[0].weight.grad.abs().sum() > 0 and model.encoder[0].weight.grad.abs().sum() > 0
    assert model.selectivity(batch).shape == (4,)
    with pytest.raises(ValueError, match="transitions"):
        model.loss(x, 0)
    batches.close()


def test_training_raises_own_latent_selectivity_on_a_controllable_toy_env(tmp_path):
    torch.manual_seed(0)
    model = ICF((3, 64, 64), latent_dim=2, num_actions=4, reconstruction="gaussian", selectivity_weight=100.0)
    before = fresh_selectivity(model, seed=1)
    batches = toy_batches(model, replay_size=2000, steps_per_batch=1, epsilon=0.2)
    train_vision(
        model,
        batches,
        steps=STEPS,
        batch_size=32,
        lr=1e-3,
        checkpoint=tmp_path / "icf.safetensors",
        seed=0,
        device=torch.device("cpu"),
        checkpoint_every=10**6,
        log_every=10**6,
    )
    after = fresh_selectivity(model, seed=1)
    print("selectivity before", before, "after", after)
    assert after.mean() > before.mean() + 0.1


STEPS = 300


def test_see_on_collect_good_objects_writes_selectivity_and_act_runs_on_its_latents(tmp_path):
    runs = tmp_path / "runs"
    check_ok(
        run_cli(
            "see",
            "experiment=quick",
            "vision_model=icf",
            f"runs_dir={runs}",
            "vec_env=dummy",
            "num_envs=2",
            "see.frames=100",
            "vision_model.train.steps=6",
            "vision_model.train.batch_size=8",
            "vision_model.collect.report_transitions=16",
            "probe.exploration_frames=100",
            "probe.frames_per_target=20",
            "env.targets=[heldout_pairing]",
            cwd=tmp_path,
        )
    )
    see = runs / "quick_icf" / "see"
    manifest = read_json(see / "manifest.json")
    assert manifest["vision_model"]["model"]["num_actions"] == 3  # from CollectGoodObjects' action space
    assert (see / "vision_model.safetensors").exists()
    icf = read_json(see / "metrics.json")["acting"]
    assert len(icf["selectivity"]) == manifest["latent_dim"] == 8
    assert all(0 <= s <= 1 for s in icf["selectivity"]) and icf["transitions"] == 16
    assert {"reconstructions.png", "traversals.png", "kl_per_dim.png"} <= {p.name for p in see.iterdir()}
    check_ok(run_cli("act", *tiny_act_args(runs, see, "icf_act"), cwd=tmp_path))
    assert (runs / "icf_act" / "act" / "manifest.json").exists()
    # Diagnosing the run again rewrites metrics.json and keeps the selectivity measured by see.
    check_ok(run_cli("diagnose", str(see), "metric=[]", f"runs_dir={runs}", cwd=tmp_path))
    assert read_json(see / "metrics.json")["acting"] == icf
