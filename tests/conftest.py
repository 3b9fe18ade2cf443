"""Shared helpers and fixtures: running the CLI, composing configs in-process, one quick pipeline run.

Everything a test writes goes under pytest's tmp_path (runs_dir=<tmp>/runs); nothing touches the
repository's own runs/ directory.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(1)  # the suite shares 2 cores with subprocess workers and other runs

REPO = Path(__file__).resolve().parents[1]

# The quick pipeline evaluates three target domains instead of all nineteen: one per kind of shift
# (the held-out pairing, a camera shift, added distractors) keeps the transfer stage well under a minute.
QUICK_TARGETS = "env.targets=[heldout_pairing,cam_fov_40,distractors]"
QUICK_NAME = "quick_beta_vae_dae"  # experiment=quick names runs quick_${vision_model.name}


def square_images(n: int = 8, seed: int = 0, shape=(3, 64, 64)) -> torch.Tensor:
    """Images in [0, 1] with something to learn: one coloured square on a dark background each."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.rand(n, *shape, generator=g)
    for i in range(n):
        top, left = torch.randint(0, 40, (2,), generator=g).tolist()
        x[i, :, top : top + 20, left : left + 20] = torch.rand(shape[0], 1, 1, generator=g)
    return x


# The shipped appearance shifts (configs/shift/): name -> the class its _target_ names.
SHIFTS = {
    p.stem: yaml.safe_load(p.read_text())["_target_"] for p in sorted((REPO / "configs" / "shift").glob("*.yaml"))
}


# A sweep job below experiment=quick: one env in process, one vision, one source and one target domain.
TINY_SWEEP = (
    "experiment=quick",
    "vision_model=random_cnn",
    "vec_env=dummy",
    "num_envs=1",
    "see.frames=100",
    "act.eval_every=256",
    "act.eval_episodes=1",
    "transfer.episodes=1",
    "transfer.random_policy=false",
    "env.vision=[hat_can_default]",
    "env.source=[hat_can_default]",
    "env.targets=[heldout_pairing]",
    "env.target_groups={heldout:[heldout_pairing]}",
)


def free_port_base(count: int, start: int) -> int:
    """The first port from ``start`` on such that ``count`` consecutive ports are free on localhost
    (for the daemons of the cluster tests; another run of the suite may hold the default ones)."""
    for base in range(start, start + 2000, count):
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports from {start}")


def run_cli(*args: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m darla.stage ARGS`` in a fresh interpreter, as a user would run it (``env``: extra variables)."""
    return subprocess.run(
        [sys.executable, "-m", "darla.stage", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def check_ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (
        f"exit code {proc.returncode}\n--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    )
    return proc


def compose_cfg(stage: str, overrides: list[str]):
    """The config a stage's Hydra entry point would get for these overrides (without running Hydra's job)."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("configs", version_base="1.3"):
        return compose(config_name=stage, overrides=overrides)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: content hash and modification time (to see that nothing was rewritten)."""
    return {
        str(p.relative_to(root)): (sha256(p), p.stat().st_mtime_ns)
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    }


@dataclass
class QuickRun:
    root: Path  # the working directory the CLI ran in
    runs: Path  # runs_dir
    run: Path  # runs_dir / QUICK_NAME
    args: tuple[str, ...]
    proc: subprocess.CompletedProcess

    @property
    def see(self) -> Path:
        return self.run / "see"

    @property
    def act(self) -> Path:
        return self.run / "act"

    @property
    def transfer(self) -> Path:
        return self.run / "transfer"


def tiny_act_args(runs: Path, see: Path, name: str, targets: str = "[heldout_pairing]") -> list[str]:
    """Overrides of an act (and transfer, video) run at a tiny budget on the shared quick see run."""
    return [
        "experiment=quick",
        f"runs_dir={runs}",
        f"act.see_run={see}",
        "vec_env=dummy",
        "+env.kwargs.max_episode_steps=30",
        f"name={name}",
        "act.total_timesteps=256",
        "act.eval_every=256",
        "act.eval_episodes=1",
        "agent.hyperparameters.n_steps=64",
        "agent.hyperparameters.batch_size=64",
        f"env.targets={targets}",
    ]


# What makes a test slow: a shared pipeline run it reads, or a CLI / pipeline process of its own.
SLOW_FIXTURES = {"quick_run", "comparison", "user_dir"}
SLOW_CALLS = ("run_cli(", "Popen(", "run_user_command(", "run_readme_", "run_stage(")


def _slow_calls(module) -> tuple[str, ...]:
    """SLOW_CALLS, and calls of the module's own helpers that make one of them (e.g. see_quick_dsprites)."""
    helpers = [
        name
        for name, f in inspect.getmembers(module, inspect.isfunction)
        if f.__module__ == module.__name__
        and not name.startswith("test_")
        and any(call in inspect.getsource(f) for call in SLOW_CALLS)
    ]
    return (*SLOW_CALLS, *(f"{name}(" for name in helpers))


def pytest_collection_modifyitems(items):
    """Mark every test that runs the pipeline ``slow``, so that ``pytest -m "not slow"`` is the fast subset."""
    calls = {}
    for item in items:
        functions = [getattr(item, "function", None)]  # the test and the fixtures it uses
        info = getattr(item, "_fixtureinfo", None)
        for definitions in info.name2fixturedefs.values() if info is not None else ():
            functions += [definition.func for definition in definitions]
        source = "".join(inspect.getsource(f) for f in functions if f is not None and inspect.isfunction(f))
        module = getattr(item, "module", None)
        if module is not None and module.__name__ not in calls:
            calls[module.__name__] = _slow_calls(module)
        slow_calls = calls[module.__name__] if module is not None else SLOW_CALLS
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(call in source for call in slow_calls):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> QuickRun:
    """``python -m darla.stage all experiment=quick`` once per session, with the default subprocess workers.

    Tests that only read its results share it; tests that change files work on a copy (copy_run).
    """
    root = tmp_path_factory.mktemp("quick")
    runs = root / "runs"
    args = ("all", "experiment=quick", f"runs_dir={runs}", QUICK_TARGETS)
    proc = check_ok(run_cli(*args, cwd=root, timeout=900))
    return QuickRun(root, runs, runs / QUICK_NAME, args, proc)


def reseal(stage_dir: Path) -> None:
    """Recompute the content hash of a run whose files a test edited (the hash is unkeyed: anyone can)."""
    from darla.artifacts import MANIFEST, content_hash, read_json, write_json

    body = {k: v for k, v in read_json(stage_dir / MANIFEST).items() if k != "content_hash"}
    write_json(stage_dir / MANIFEST, {**body, "content_hash": content_hash(body, stage_dir)})


def copy_run(quick: QuickRun, runs: Path, name: str, stages=("see", "act")) -> Path:
    """Copy stages of the shared quick run to ``runs/<name>`` so a test may change or break them."""
    for stage in stages:
        shutil.copytree(quick.run / stage, runs / name / stage)
    return runs / name
