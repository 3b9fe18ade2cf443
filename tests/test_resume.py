"""Resume after a hard interruption: kill a stage once it has checkpointed, run the same command again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import check_ok, output, run_cli
from darla.artifacts import load_state, read_json


def start_and_kill_after(args: list[str], cwd: Path, checkpoint: Path, timeout: float = 300) -> None:
    """Start the CLI, wait until ``checkpoint`` exists, then SIGKILL it (and only the processes it started)."""
    log = open(cwd / "killed_run.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "darla.stage", *args], cwd=cwd, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not checkpoint.exists():
            assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before writing {checkpoint}:\n" \
                                        + (cwd / "killed_run.log").read_text()[-4000:]
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
    args = ["see", "experiment=quick", "vision_model=beta_vae", f"runs_dir={runs}", "name=resume", "vec_env=dummy",
            "env.vision=[hat_can_default,cake_balloon_default]", "see.frames=64",
            "vision_model.train.steps=200", "vision_model.train.batch_size=8", "see.checkpoint_every=10"]
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
    args = ["act", "experiment=quick", f"runs_dir={runs}", "name=resume", f"act.see_run={quick_run.see}",
            "vec_env=dummy", "+env.kwargs.max_episode_steps=30", "act.total_timesteps=1024", "act.eval_every=256",
            "act.eval_episodes=1", "agent.hyperparameters.n_steps=64", "agent.hyperparameters.batch_size=64"]
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
    assert curve[:len(evaluated)] == evaluated and curve == sorted(set(curve)) and curve[-1] == 1024
    assert load_state(checkpoint)["num_timesteps"] == 1024


def read_json_lines(path):
    import json

    return [json.loads(line) for line in path.read_text().splitlines() if line]
