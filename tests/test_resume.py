"""Resume after a hard interruption: kill a stage once it has checkpointed, run the same command again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import check_ok, output, run_cli
from darla.artifacts import load_state, read_json


def start_and_kill_after(args: list[str], cwd: Path, checkpoint: Path, timeout: float = 300) -> None:
    """Start the CLI, wait until ``checkpoint`` exists, then SIGKILL it (and only the processes it started)."""
    log = open(cwd / "killed_run.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "darla.stage", *args],
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while not checkpoint.exists():
            assert proc.poll() is None, (
                f"the run ended (exit {proc.returncode}) before writing {checkpoint}:\n"
                + (cwd / "killed_run.log").read_text()[-4000:]
            )
            assert time.monotonic() < deadline, f"no checkpoint {checkpoint} after {timeout}s"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the CLI and any worker it started
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted; give it more work"


def test_see_resumes_from_its_checkpoint(tmp_path):
    runs = tmp_path / "runs"
    args = [
        "see",
        "experiment=quick",
        "vision_model=beta_vae",
        f"runs_dir={runs}",
        "name=resume",
        "vec_env=dummy",
        "env.vision=[hat_can_default,cake_balloon_default]",
        "see.frames=64",
        "vision_model.train.steps=200",
        "vision_model.train.batch_size=8",
        "see.checkpoint_every=10",
    ]
    out = runs / "resume" / "see"
    checkpoint = out / "checkpoints" / "vision_model.safetensors"
    start_and_kill_after(args, tmp_path, checkpoint)
    assert not (out / "manifest.json").exists()
    saved = load_state(checkpoint)["step"]
    assert 10 <= saved < 200 and saved % 10 == 0

    proc = check_ok(run_cli(*args, cwd=tmp_path, timeout=300))
    text = output(proc)
    assert f"[vision_model] resuming from {checkpoint} at step {saved}/200" in text
    assert "collected" not in text  # the frames of the killed run are reused
    manifest = read_json(out / "manifest.json")
    assert manifest["frames"] == 64 and manifest["vision_model"]["train"]["steps"] == 200
    assert load_state(checkpoint)["step"] == 200
    assert (out / "vision_model.safetensors").exists() and (out / "traversals.gif").exists()


def test_act_resumes_from_its_checkpoint(quick_run, tmp_path):
    runs = tmp_path / "runs"
    args = [
        "act",
        "experiment=quick",
        f"runs_dir={runs}",
        "name=resume",
        f"act.see_run={quick_run.see}",
        "vec_env=dummy",
        "+env.kwargs.max_episode_steps=30",
        "act.total_timesteps=1024",
        "act.eval_every=256",
        "act.eval_episodes=1",
        "agent.hyperparameters.n_steps=64",
        "agent.hyperparameters.batch_size=64",
    ]
    out = runs / "resume" / "act"
    checkpoint = out / "checkpoint" / "state.safetensors"
    start_and_kill_after(args, tmp_path, checkpoint)
    assert not (out / "manifest.json").exists()
    state = load_state(checkpoint)
    saved = int(state["num_timesteps"])
    assert 256 <= saved < 1024
    evaluated = sorted({h["timesteps"] for h in state["history"]})

    proc = check_ok(run_cli(*args, cwd=tmp_path, timeout=300))
    assert f"[act] resuming from {checkpoint} at {saved} steps" in output(proc)
    manifest = read_json(out / "manifest.json")
    assert manifest["timesteps"] == 1024
    curve = [c["timesteps"] for c in (read_json_lines(out / "eval.jsonl")) if c["domain"] == "hat_can_default"]
    # The evaluations before the interruption are kept and none is repeated.
    assert curve[: len(evaluated)] == evaluated and curve == sorted(set(curve)) and curve[-1] == 1024
    assert load_state(checkpoint)["num_timesteps"] == 1024


def read_json_lines(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line]


# -- exact resume: killed at random points, resumed, the same final weights as never interrupted ----------------


def tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def same_tensors(a: Path, b: Path) -> bool:
    import torch

    ta, tb = tensors(a), tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def kill_at_random_points(
    args: list[str], cwd: Path, checkpoint: Path, manifest: Path, seed: int, kills: int = 2, timeout: float = 300
) -> int:
    """Start the CLI ``kills`` times; each time, once ``checkpoint`` exists, wait a random 0-3 s and
    SIGKILL its whole process group. Returns how many kills hit an unfinished run."""
    import random

    rng = random.Random(seed)
    hits = 0
    for k in range(kills):
        log = open(cwd / f"killed_{k}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "darla.stage", *args],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 3))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            hits += int(not manifest.exists())
        proc.wait()
        log.close()
    return hits


SEE_ARGS = [
    "see",
    "experiment=quick",
    "vec_env=dummy",
    "env.vision=[hat_can_default,cake_balloon_default]",
    "see.frames=64",
    "dae.train.steps=60",
    "dae.train.batch_size=8",
    "vision_model.train.steps=150",
    "vision_model.train.batch_size=8",
    "see.checkpoint_every=10",
]


def test_see_killed_at_random_points_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    runs = tmp_path / "runs"
    check_ok(run_cli(*SEE_ARGS, f"runs_dir={runs}", "name=straight", cwd=tmp_path, timeout=300))
    killed = runs / "killed" / "see"
    args = [*SEE_ARGS, f"runs_dir={runs}", "name=killed"]
    hits = kill_at_random_points(
        args, tmp_path, killed / "checkpoints" / "dae.safetensors", killed / "manifest.json", seed=int(time.time())
    )
    assert hits >= 1, "no kill landed before the run finished"
    check_ok(run_cli(*args, cwd=tmp_path, timeout=300))
    for name in ("dae.safetensors", "vision_model.safetensors", "checkpoints/vision_model.safetensors"):
        assert same_tensors(killed / name, runs / "straight" / "see" / name), name
    assert not list(killed.rglob(".*.tmp"))  # temporaries of the killed writes are cleaned up


@pytest.mark.parametrize(
    "agent, extra",
    [
        ("ppo", ["vec_env=subprocess", "agent.hyperparameters.n_steps=64", "agent.hyperparameters.batch_size=64"]),
        # A high final exploration rate: a resume that draws its first action with the wrong rate shows.
        (
            "dqn",
            [
                "vec_env=dummy",
                "agent.hyperparameters.learning_starts=100",
                "agent.hyperparameters.buffer_size=2000",
                "agent.hyperparameters.target_update_interval=100",
                "agent.hyperparameters.exploration_final_eps=0.5",
            ],
        ),
    ],
)
def test_act_killed_at_random_points_ends_with_the_weights_of_an_uninterrupted_run(quick_run, tmp_path, agent, extra):
    runs = tmp_path / "runs"
    common = [
        "act",
        "experiment=quick",
        f"runs_dir={runs}",
        f"act.see_run={quick_run.see}",
        f"agent={agent}",
        "+env.kwargs.max_episode_steps=30",
        "act.total_timesteps=1536",
        "act.eval_every=256",
        "act.eval_episodes=1",
        *extra,
    ]
    check_ok(run_cli(*common, "name=straight", cwd=tmp_path, timeout=300))
    killed = runs / "killed" / "act"
    args = [*common, "name=killed"]
    hits = kill_at_random_points(
        args, tmp_path, killed / "checkpoint" / "state.safetensors", killed / "manifest.json", seed=int(time.time())
    )
    assert hits >= 1, "no kill landed before the run finished"
    check_ok(run_cli(*args, cwd=tmp_path, timeout=300))
    straight = runs / "straight" / "act"
    assert same_tensors(killed / "policy.safetensors", straight / "policy.safetensors")
    final, reference = (
        load_state(killed / "checkpoint" / "state.safetensors"),
        load_state(straight / "checkpoint" / "state.safetensors"),
    )
    assert final["num_timesteps"] == reference["num_timesteps"] >= 1536
    assert final["history"] == reference["history"]
    import torch

    assert all(torch.equal(final["policy"][k], reference["policy"][k]) for k in reference["policy"])
