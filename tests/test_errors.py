"""Bad input gives a clear message that names the bad thing, and earlier results stay intact."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch

from conftest import QUICK_NAME, compose_cfg, copy_run, output, run_cli, snapshot
from darla import act, see, transfer
from darla.artifacts import load_state, read_json
from darla.config import resolve_device
from darla.policy_inputs import PolicyInput
from darla.vision_training import FrameBatches, NonFiniteLoss, train_vision
from vision_models import BetaVAE


def test_unknown_stage_lists_the_valid_ones(tmp_path):
    proc = run_cli("sea", "runs_dir=runs", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "unknown stage 'sea' (did you mean 'see'?)" in proc.stderr
    assert "valid stages: see, act, transfer, diagnose, video, scan, all, compare, leaderboard" in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_no_stage_prints_the_usage_and_fails(tmp_path):
    proc = run_cli(cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "usage: python -m darla.stage STAGE" in proc.stdout


@pytest.mark.parametrize(
    "stage, override, available",
    [
        ("see", "vision_model=beta_vea", "beta_vae_dae"),
        ("act", "agent=ppo2", "dqn"),
        ("see", "env=collect_bad_objects", "collect_good_objects"),
    ],
)
def test_unknown_config_names_list_the_available_options(tmp_path, stage, override, available):
    proc = run_cli(stage, override, f"runs_dir={tmp_path / 'runs'}", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    group, name = override.split("=")
    text = output(proc)
    assert f"Could not find '{group}/{name}'" in text
    assert re.search(rf"Available options in '{group}':(\s+\S+)*\s+{available}\b", text), text
    assert not (tmp_path / "runs").exists()


def test_parent_with_another_input_shape_is_refused(quick_run, tmp_path):
    runs = tmp_path / "runs"
    before = snapshot(quick_run.see)
    proc = run_cli(
        "act",
        "experiment=quick",
        f"runs_dir={runs}",
        "name=narrow",
        f"act.see_run={quick_run.see}",
        "+env.kwargs.obs_width=32",
        "env.observation_shape=[3,64,32]",
        "vec_env=dummy",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode != 0
    text = output(proc)
    assert f"parent {quick_run.see} does not fit" in text
    assert "input_shape is [3, 64, 64], this stage expects [3, 64, 32]" in text
    assert not (runs / "narrow" / "act" / "config.json").exists()
    assert snapshot(quick_run.see) == before


def quick_cfg(stage, runs, name, *extra):
    return compose_cfg(stage, ["experiment=quick", f"runs_dir={runs}", f"name={name}", "vec_env=dummy", *extra])


def test_rerun_with_other_settings_is_refused_and_overwrite_replaces(quick_run, tmp_path):
    runs = tmp_path / "runs"
    run = copy_run(quick_run, runs, "copy")
    see_before, act_before = snapshot(run / "see"), snapshot(run / "act")

    with pytest.raises(
        ValueError,
        match=r"already holds a run with different settings \(see, vision_model differ\).*"
        r"overwrite=true",
    ):
        see.run(quick_cfg("see", runs, "copy", "vision_model.train.steps=31", "see.frames=500"))
    with pytest.raises(ValueError, match=r"already holds a run with different settings \(act differ\)"):
        act.run(quick_cfg("act", runs, "copy", "act.total_timesteps=2048"))
    assert snapshot(run / "see") == see_before and snapshot(run / "act") == act_before

    # overwrite=true replaces the act run (its parent see run is only read).
    act.run(
        quick_cfg(
            "act",
            runs,
            "copy",
            "overwrite=true",
            "act.total_timesteps=256",
            "act.eval_every=256",
            "act.eval_episodes=1",
            "+env.kwargs.max_episode_steps=20",
            "agent.hyperparameters.n_steps=64",
            "agent.hyperparameters.batch_size=64",
        )
    )
    manifest = read_json(run / "act" / "manifest.json")
    assert manifest["timesteps"] == 256
    assert read_json(run / "act" / "config.json")["act"]["total_timesteps"] == 256
    curves = [json.loads(line) for line in (run / "act" / "eval.jsonl").read_text().splitlines()]
    assert {c["timesteps"] for c in curves} == {256}  # the old curves went with the old run
    assert snapshot(run / "see") == see_before


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing"])
def test_damaged_weights_are_refused_with_their_path(quick_run, tmp_path, damage):
    runs = tmp_path / "runs"
    run = copy_run(quick_run, runs, "damaged", stages=("see",))
    target = run / "see" / ("dae.safetensors" if damage == "missing" else "vision_model.safetensors")
    if damage == "garbage":
        target.write_bytes(b"not a safetensors file" * 10)
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    else:
        target.unlink()
    why = "does not exist" if damage == "missing" else "do not match the content hash"
    with pytest.raises(ValueError, match=re.escape(str(target)) + ".*" + why):
        act.run(quick_cfg("act", runs, "damaged"))
    assert not (run / "act").exists()


def test_changed_policy_is_refused_by_transfer(quick_run, tmp_path):
    runs = tmp_path / "runs"
    run = copy_run(quick_run, runs, "tampered", stages=("act",))
    policy = run / "act" / "policy.safetensors"
    data = bytearray(policy.read_bytes())
    data[-1] ^= 0xFF  # still a readable file, but not the one the manifest hashed
    policy.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(str(policy)) + ".*do not match the content hash"):
        transfer.run(quick_cfg("transfer", runs, "tampered"))
    assert not (run / "transfer").exists()


@pytest.mark.parametrize("stage, role", [("act", "source"), ("see", "vision")])
def test_unknown_domain_name_is_refused(tmp_path, stage, role):
    runs = tmp_path / "runs"
    module = {"act": act, "see": see}[stage]
    with pytest.raises(
        ValueError,
        match=rf"{role} domains \['hat_can_nowhere'\] are not defined; "
        rf"defined domains: \[.*'hat_can_default'",
    ):
        module.run(
            quick_cfg(
                stage, runs, "bad_domain", f"env.{role}=[hat_can_default,hat_can_nowhere]", f"act.see_run={tmp_path}"
            )
        )
    assert not runs.exists()


def test_unknown_domain_name_on_the_command_line(tmp_path):
    proc = run_cli(
        "see",
        "experiment=quick",
        f"runs_dir={tmp_path / 'runs'}",
        "env.vision=[hat_can_defualt]",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "vision domains ['hat_can_defualt'] are not defined" in output(proc)
    assert not (tmp_path / "runs" / QUICK_NAME / "see" / "config.json").exists()


class NaNAfter(BetaVAE):
    """A real β-VAE whose loss turns NaN from step ``k`` on."""

    def __init__(self, k):
        super().__init__((3, 64, 64), latent_dim=2)
        self.k = k

    def loss(self, batch, step):
        total, terms = super().loss(batch, step)
        return (total * math.nan if step >= self.k else total), terms


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
    checkpoint = tmp_path / "checkpoints" / "vision.safetensors"
    model = NaNAfter(k=7)
    with pytest.raises(
        NonFiniteLoss, match=rf"loss became nan at step 7 .*last good checkpoint {re.escape(str(checkpoint))}"
    ):
        train_vision(
            model,
            FrameBatches(frames),
            steps=20,
            batch_size=4,
            lr=1e-3,
            checkpoint=checkpoint,
            seed=0,
            device=torch.device("cpu"),
            checkpoint_every=3,
            log_every=100,
        )
    state = load_state(checkpoint)
    assert state["step"] == 6  # checkpoints at 3 and 6; step 7 failed before any update
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert [p.name for p in checkpoint.parent.iterdir()] == [checkpoint.name]  # no half-written file

    # The good checkpoint is usable: a model with a finite loss resumes from it.
    resumed = NaNAfter(k=10**9)
    train_vision(
        resumed,
        FrameBatches(frames),
        steps=8,
        batch_size=4,
        lr=1e-3,
        checkpoint=checkpoint,
        seed=0,
        device=torch.device("cpu"),
        checkpoint_every=3,
        log_every=100,
    )
    assert load_state(checkpoint)["step"] == 8


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"device='cuda' was asked for but torch sees no CUDA device"):
        resolve_device("cuda")
    proc = run_cli(
        "act",
        "experiment=quick",
        f"runs_dir={tmp_path / 'runs'}",
        "device=cuda",
        "vision_model=pixels",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "device='cuda' was asked for but torch sees no CUDA device; use device=cpu or auto" in output(proc)
    assert not (tmp_path / "runs" / "quick_pixels" / "act" / "config.json").exists()


def test_diverged_policy_stops_act_and_keeps_the_last_checkpoint(tmp_path):
    from darla.config import domains
    from darla.vec_env import make_vec_env

    cfg = compose_cfg("act", ["experiment=quick", "vec_env=dummy"])
    source = domains(cfg, "source")[:1]
    encoder = BetaVAE(latent_dim=4).eval()
    venv = make_vec_env(source, 2, "dummy", 0, encoder)
    try:
        agent = act.build_agent(cfg.agent, venv, 0, torch.device("cpu"), PolicyInput("latents", encoder=encoder))
        training = act.Training(tmp_path, agent, venv, [source[0].name], episodes=1, deterministic=True)
        agent.num_timesteps = 1024
        with torch.no_grad():
            next(agent.policy.parameters()).fill_(float("nan"))
        with pytest.raises(
            FloatingPointError, match=r"non-finite by step 1024; stopped, no checkpoint had been written"
        ):
            training.check_finite()
        assert not training.checkpoint.exists() and not (tmp_path / "policy.safetensors").exists()
    finally:
        venv.close()


def test_nan_before_any_checkpoint_says_none_was_written(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
    checkpoint = tmp_path / "checkpoints" / "vision.safetensors"
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 1 .*stopped, no checkpoint had been written yet"):
        train_vision(
            NaNAfter(k=1),
            FrameBatches(frames),
            steps=20,
            batch_size=4,
            lr=1e-3,
            checkpoint=checkpoint,
            seed=0,
            device=torch.device("cpu"),
            checkpoint_every=5,
            log_every=100,
        )
    assert not checkpoint.exists()


def test_a_refused_rerun_leaves_the_finished_run_and_its_record_alone(quick_run, tmp_path):
    runs = tmp_path / "runs"
    run = copy_run(quick_run, runs, QUICK_NAME, stages=("see",))
    before = snapshot(run)
    assert (run / "see" / ".hydra" / "config.yaml").exists()
    proc = run_cli(
        "see", "experiment=quick", f"runs_dir={runs}", "vision_model.train.steps=31", cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2 and "already holds a run with different settings" in proc.stderr
    # overwrite=true with settings refused by a later check (an unknown domain) deletes nothing either
    proc = run_cli(
        "see",
        "experiment=quick",
        f"runs_dir={runs}",
        "overwrite=true",
        "env.vision=[nowhere]",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2 and "vision domains ['nowhere'] are not defined" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(run) == before


def test_damaged_data_files_are_named(quick_run, tmp_path):
    from darla.artifacts import read_jsonl, read_npz

    runs = tmp_path / "runs"
    run = copy_run(quick_run, runs, QUICK_NAME, stages=("see",))
    frames = run / "see" / "frames.npz"
    frames.write_bytes(frames.read_bytes()[: frames.stat().st_size // 3])
    proc = run_cli("diagnose", str(run / "see"), f"runs_dir={runs}", "metrics.compute=null", cwd=tmp_path, timeout=180)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{frames} is damaged or not an array file" in proc.stderr
    with pytest.raises(ValueError, match=re.escape(str(frames))):
        read_npz(frames)

    episodes = tmp_path / "episodes.jsonl"
    episodes.write_text('{"return": 1}\n{"return": \n')
    with pytest.raises(ValueError, match=re.escape(f"{episodes}, line 2, is not valid JSON")):
        read_jsonl(episodes)
