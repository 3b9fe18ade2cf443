"""Sweeps through hydra/launcher=slurm on a real single-node SLURM cluster (tests/cluster/slurm.sh:
munged, MariaDB, slurmdbd, slurmctld and slurmd on localhost), not stand-ins for its tools.

A sweep runs as a real job array and its leaderboard is built from the array's runs; a job that hits
its time limit is requeued by submitit and resumes from the stages' checkpoints. The cluster needs
root and Debian's slurm-wlm, slurmdbd, munge and mariadb-server: without them these tests are
skipped, unless DARLA_REQUIRE_CLUSTERS=1 (set by .ci/run, which installs them) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_SWEEP, check_ok, free_port_base, output, run_cli
from darla.artifacts import read_json

SCRIPT = Path(__file__).parent / "cluster" / "slurm.sh"
TOOLS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
# A CPU-only job that fits the test node (2 cores): slurm.yaml asks for 9 cores, a GPU and 32 GB.
SMALL_JOBS = (
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.mem_gb=2",
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """Start the cluster; the environment in which SLURM's clients (and submitit) reach it."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    reason = f"tools not installed: {', '.join(missing)}" if missing else "" if os.geteuid() == 0 else "not root"
    if reason:
        if os.environ.get("DARLA_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"DARLA_REQUIRE_CLUSTERS=1 but no SLURM cluster can start here: {reason}")
        pytest.skip(f"no SLURM cluster can start here: {reason}")
    state = tmp_path_factory.mktemp("slurm")
    log = state.parent / "slurm-start.log"
    with open(log, "w") as out:
        ports = {"DARLA_SLURM_PORT": str(free_port_base(4, 21000))}  # slurmctld, slurmd, slurmdbd, MariaDB
        started = subprocess.run(
            ["bash", str(SCRIPT), "start", str(state)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **ports},
        )
    assert started.returncode == 0, log.read_text()
    yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    subprocess.run(["bash", str(SCRIPT), "stop", str(state)], check=False)


def slurm_tool(env: dict[str, str], *args: str) -> str:
    return subprocess.run(args, env=env, capture_output=True, text=True, check=True, timeout=30).stdout


def sacct(env: dict[str, str], job: str) -> list[list[str]]:
    """Every attempt (-D: requeued ones too) of a job and its array tasks: JobID, State, ExitCode, Elapsed."""
    text = slurm_tool(env, "sacct", "-D", "-n", "-P", "-X", "-j", job, "-o", "JobID,State,ExitCode,Elapsed")
    return [line.split("|") for line in text.splitlines()]


def settled_sacct(env: dict[str, str], job: str, timeout: float = 120) -> list[list[str]]:
    """sacct once SLURM has recorded the end of every attempt: submitit returns as soon as a task has
    written its result, while the task's batch step may still be RUNNING (COMPLETING) for a few seconds."""
    deadline = time.monotonic() + timeout
    while True:
        states = sacct(env, job)
        unsettled = [state for _, state, *_ in states if state in {"PENDING", "RUNNING", "COMPLETING"}]
        if not unsettled or time.monotonic() > deadline:
            return states
        time.sleep(2)


def submitted_jobs(runs: Path) -> list[str]:
    """The SLURM job ids of a sweep, from submitit's folders (an array's and one per task, <job>_<task>)."""
    return sorted(p.name for p in runs.glob("multirun/*/.submitit/*") if p.is_dir())


def job_log(runs: Path, job: str) -> str:
    return "".join(p.read_text() for p in sorted(runs.glob(f"multirun/*/.submitit/{job}/*_log.*")))


def test_sweep_runs_as_a_job_array_and_its_runs_make_a_leaderboard(slurm, tmp_path):
    runs = tmp_path / "runs"
    sweep = ("seed=0,1", "name=sweep/${vision_model.name}/seed${seed}", "act.total_timesteps=256")
    args = ("all", "-m", "hydra/launcher=slurm", *SMALL_JOBS, *sweep, f"runs_dir={runs}", *TINY_SWEEP)
    proc = check_ok(run_cli(*args, cwd=tmp_path, env=slurm))
    [array, *tasks] = submitted_jobs(runs)  # the array's folder (its sbatch script), then one per task
    assert tasks == [f"{array}_0", f"{array}_1"], (array, tasks)
    script = (next(runs.glob("multirun/*/.submitit")) / array / f"{array}_submission.sh").read_text().splitlines()
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --cpus-per-task=1", "#SBATCH --job-name=darla"):
        assert line in script, f"{line!r} not in the submitted script"
    states = settled_sacct(slurm, array)
    print(f"sacct -j {array}:", *("|".join(row) for row in states), sep="\n  ")
    assert [(job, state) for job, state, *_ in states] == [(f"{array}_0", "COMPLETED"), (f"{array}_1", "COMPLETED")]
    for seed in (0, 1):
        assert read_json(runs / "sweep" / "random_cnn" / f"seed{seed}" / "transfer" / "manifest.json")
    check_ok(run_cli("leaderboard", str(runs / "sweep"), cwd=tmp_path))
    rows = (runs / "sweep" / "runs.csv").read_text().splitlines()
    print("runs.csv:", *rows, sep="\n  ")
    assert [row.split(",")[:2] for row in rows[1:]] == [["random_cnn", "0"], ["random_cnn", "1"]], output(proc)
    assert "| random_cnn | 2 |" in (runs / "sweep" / "leaderboard.md").read_text()


def test_job_that_hits_its_time_limit_is_requeued_and_resumes_from_its_checkpoints(slurm, tmp_path):
    """A one-minute limit with SIGUSR2 20 s before it: act needs longer than that, so the job is
    signalled, submitit requeues it, and the next attempt goes on from the act checkpoint."""
    runs = tmp_path / "runs"
    args = (
        "all", "-m", "hydra/launcher=slurm", *SMALL_JOBS,
        "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=20", "hydra.launcher.max_num_timeout=8",
        "seed=0", "name=sweep/${vision_model.name}/seed${seed}", "act.total_timesteps=10000",
        f"runs_dir={runs}", *TINY_SWEEP,
    )  # fmt: skip
    with open(tmp_path / "launcher.log", "w") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "darla.stage", *args], cwd=tmp_path, env=slurm, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 600
        while launcher.poll() is None:
            assert time.monotonic() < deadline, "the sweep did not finish in 10 minutes"
            # SLURM holds a requeued batch job for two minutes (BeginTime); let it start now.
            for line in slurm_tool(slurm, "squeue", "-h", "-o", "%i %r").splitlines():
                job, reason = line.split()
                if reason == "BeginTime":
                    slurm_tool(slurm, "scontrol", "update", f"JobId={job}", "StartTime=now")
            time.sleep(2)
    assert launcher.returncode == 0, (tmp_path / "launcher.log").read_text()[-6000:]
    [job] = submitted_jobs(runs)
    states = settled_sacct(slurm, job)
    print(f"sacct -D -j {job}:", *("|".join(row) for row in states), sep="\n  ")
    assert [state for _, state, *_ in states[:-1]] == ["REQUEUED"] * (len(states) - 1) and len(states) >= 2
    text = job_log(runs, job)
    assert states[-1][1] == "COMPLETED", text[-4000:]
    assert "Caught signal SIGUSR2" in text
    run = runs / "sweep" / "random_cnn" / "seed0"
    resumed = [line for line in text.splitlines() if "resuming from" in line or "nothing to do" in line]
    print("resumed:", *resumed, sep="\n  ")
    assert f"[act] resuming from {run / 'act' / 'checkpoint' / 'state.safetensors'}" in text
    assert read_json(run / "act" / "manifest.json")["timesteps"] >= 10000
    assert read_json(run / "transfer" / "manifest.json")["act_dir"] == str(run / "act")


def test_a_finished_job_is_not_killed_by_a_late_requeue_signal():
    """SLURM's pre-timeout SIGUSR2 can land after a job's task has returned, while Python shuts down
    and has put back the signal's default action (death): the job, its work done, would end FAILED."""
    code = (
        "import os, signal\n"
        "from darla.errors import user_facing\n"
        "user_facing('all')(lambda: None)()\n"
        "os.kill(os.getpid(), signal.SIGUSR2)\n"
    )
    for job, survives in (("123", True), (None, False)):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        env |= {"SLURM_JOB_ID": job} if job else {}
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert (proc.returncode == 0) is survives, (job, proc.returncode, proc.stderr)
