"""Sweeps through Hydra launchers on this machine: submitit's local executor (interrupted, then
resumed) and joblib. The SLURM launcher runs on a real cluster in test_slurm.py.

Every job is a real ``python -m darla.stage all`` at a budget below experiment=quick: one env in
process, one vision, one source and one target domain, a few hundred steps. Each job writes to its
own run directory, named after the values it sweeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import TINY_SWEEP, check_ok, output, run_cli, snapshot
from darla.artifacts import read_json

STAGES = ("see", "act", "transfer")


def sweep_args(runs: Path, launcher: str, *sweep: str) -> tuple[str, ...]:
    return ("all", "-m", f"hydra/launcher={launcher}", *sweep, f"runs_dir={runs}", *TINY_SWEEP)


def job_logs(runs: Path) -> set[Path]:
    """The stdout files of every submitit job under runs_dir (local.yaml sends stderr there too)."""
    return set(runs.glob("multirun/*/.submitit/*/*_log.out"))


def live_processes(group: int) -> list[int]:
    """Processes of a process group that are still running (zombies excluded)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_joblib_sweep_runs_every_job_into_its_own_directory(tmp_path):
    """Jobs in joblib's (loky) workers start their own forkserver env workers, as a real sweep does."""
    runs = tmp_path / "runs"
    args = sweep_args(
        runs, "local_pool", "seed=0,1", "name=sweep/${vision_model.name}/seed${seed}", "act.total_timesteps=256"
    )
    args = tuple({"vec_env=dummy": "vec_env=subprocess", "num_envs=1": "num_envs=2"}.get(a, a) for a in args)
    proc = check_ok(run_cli(*args, cwd=tmp_path, timeout=300))
    assert "Joblib.Parallel(n_jobs=2" in output(proc)
    for seed in (0, 1):
        run = runs / "sweep" / "random_cnn" / f"seed{seed}"
        assert read_json(run / "act" / "manifest.json")["timesteps"] >= 256
        transfer = read_json(run / "transfer" / "manifest.json")
        assert transfer["act_dir"] == str(run / "act")
    # Each seed built its own random encoder: the swept value reached the job's config.
    weights = [
        (runs / "sweep" / "random_cnn" / f"seed{s}" / "see" / "vision_model.safetensors").read_bytes() for s in (0, 1)
    ]
    assert weights[0] != weights[1]


def test_submitit_local_sweep_interrupted_resumes_without_rerunning_finished_jobs(tmp_path):
    """Kill a two-job sweep (launcher and every job process) once the short job has finished, run
    the same command again: the finished job is left alone and the other resumes from its checkpoint."""
    runs = tmp_path / "runs"
    args = sweep_args(
        runs, "local", "act.total_timesteps=256,1280", "name=sweep/${vision_model.name}/steps${act.total_timesteps}"
    )
    short, long = runs / "sweep" / "random_cnn" / "steps256", runs / "sweep" / "random_cnn" / "steps1280"

    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(
            [sys.executable, "-m", "darla.stage", *args],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 240
            while not (
                (short / "transfer" / "manifest.json").exists()
                and (long / "act" / "checkpoint" / "state.safetensors").exists()
            ):
                assert first.poll() is None, (tmp_path / "first.log").read_text()[-4000:]
                assert time.monotonic() < deadline, "the short job did not finish in time"
                time.sleep(0.2)
        finally:
            os.killpg(first.pid, signal.SIGKILL)  # the launcher and submitit's job processes share its group
            first.wait()
    deadline = time.monotonic() + 10
    while live_processes(first.pid):
        assert time.monotonic() < deadline, f"processes {live_processes(first.pid)} survived the kill"
        time.sleep(0.1)
    assert not (long / "transfer" / "manifest.json").exists(), "the long job finished before the kill"
    finished = {stage: snapshot(short / stage) for stage in STAGES}
    logs_before = job_logs(runs)

    proc = check_ok(run_cli(*args, cwd=tmp_path, timeout=300))
    for stage in STAGES:
        assert snapshot(short / stage) == finished[stage], f"the finished job's {stage} files were rewritten"
    logs = {p: p.read_text() for p in job_logs(runs) - logs_before}
    assert len(logs) == 2, output(proc)
    [short_log] = [text for text in logs.values() if str(short) in text]
    [long_log] = [text for text in logs.values() if str(long) in text]
    for stage in STAGES:
        assert f"[{stage}] {short / stage} is finished with these settings; nothing to do" in short_log
    assert f"[see] {long / 'see'} is finished with these settings; nothing to do" in long_log
    assert f"[act] resuming from {long / 'act' / 'checkpoint' / 'state.safetensors'}" in long_log
    assert "[transfer] done" in long_log
    assert read_json(long / "act" / "manifest.json")["timesteps"] >= 1280
    assert read_json(long / "transfer" / "manifest.json")["act_dir"] == str(long / "act")
