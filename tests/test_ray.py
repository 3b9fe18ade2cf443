"""Sweeps through hydra/launcher=ray_cluster on a real Ray head that the test starts on localhost
(`ray start --head`), joined with hydra.launcher.ray.init.address=<head>: every job runs as a Ray task,
its runs make a leaderboard, and the same command run again leaves the finished jobs alone.

Needs the `ray` extra (the test extra has it). Without it the test is skipped, unless
DARLA_REQUIRE_CLUSTERS=1 (set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import TINY_SWEEP, check_ok, free_port_base, output, run_cli, snapshot
from darla.artifacts import read_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head() -> str:
    """A Ray head on 127.0.0.1 with 2 CPUs; its address."""
    try:
        import hydra_plugins.hydra_ray_launcher  # noqa: F401
    except ImportError as error:
        if os.environ.get("DARLA_REQUIRE_CLUSTERS") == "1":
            pytest.fail(f"DARLA_REQUIRE_CLUSTERS=1 but the ray extra is not installed: {error}")
        pytest.skip(f"the ray extra is not installed: {error}")
    ray = shutil.which("ray")
    assert ray, "hydra-ray-launcher is installed but the ray command is not on PATH"
    port = free_port_base(1, 26379)  # above Ray's worker ports (10002-19999)
    start = [ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2"]
    start += ["--include-dashboard=false", "--disable-usage-stats"]
    started = subprocess.run(start, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, output(started)
    yield f"127.0.0.1:{port}"
    subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)


def test_sweep_runs_as_ray_tasks_on_a_running_head_and_makes_a_leaderboard(ray_head, tmp_path):
    runs = tmp_path / "runs"
    args = (
        "all", "-m", "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={ray_head}",
        "hydra.launcher.ray.remote.num_cpus=1", "seed=0,1", "name=sweep/${vision_model.name}/seed${seed}",
        "act.total_timesteps=256", f"runs_dir={runs}", *TINY_SWEEP,
    )  # fmt: skip
    proc = check_ok(run_cli(*args, cwd=tmp_path, timeout=600))
    text = output(proc)
    assert f"Initializing ray with config: {{'address': '{ray_head}'" in text, text[-4000:]
    # Every job ran in a Ray worker process (Ray prefixes their output with the task's name and pid).
    workers = {line.split("pid=")[1].split(")")[0] for line in text.splitlines() if "(_run_job pid=" in line}
    assert workers, text[-4000:]
    print(f"Ray worker processes that ran the jobs: {sorted(workers)}")
    runs_of = {seed: runs / "sweep" / "random_cnn" / f"seed{seed}" for seed in (0, 1)}
    for run in runs_of.values():
        assert read_json(run / "transfer" / "manifest.json")["act_dir"] == str(run / "act")
    check_ok(run_cli("leaderboard", str(runs / "sweep"), cwd=tmp_path))
    rows = (runs / "sweep" / "runs.csv").read_text().splitlines()
    print("runs.csv:", *rows, sep="\n  ")
    assert [row.split(",")[:2] for row in rows[1:]] == [["random_cnn", "0"], ["random_cnn", "1"]]

    # The same sweep again: each job finds its stages finished and rewrites nothing.
    finished = {seed: snapshot(run) for seed, run in runs_of.items()}
    again = output(check_ok(run_cli(*args, cwd=tmp_path, timeout=600)))
    for seed, run in runs_of.items():
        assert snapshot(run) == finished[seed], f"seed {seed}'s files were rewritten"
        for stage in ("see", "act", "transfer"):
            assert f"[{stage}] {run / stage} is finished with these settings; nothing to do" in again
