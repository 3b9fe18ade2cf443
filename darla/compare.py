"""compare: which vision makes a policy survive the shift? see → act → transfer for every vision
model × seed, then one leaderboard over all of them.

The jobs are one Hydra multirun of ``all`` (``python -m darla.stage all -m vision_model=a,b
seed=0,1 ...``), so any Hydra launcher runs them: one after another here by default, or in
parallel with ``hydra/launcher=local_pool`` (joblib, this machine), ``local`` (submitit),
``slurm`` or ``ray_cluster`` (configs/hydra/launcher/), given to compare as to any stage.
Job ``(model, seed)`` writes to ``<runs_dir>/<compare.name>/<model>/seed<seed>/{see,act,transfer}``.
A finished stage is never run again and an unfinished one resumes, so re-running an interrupted comparison continues it.
Then darla/leaderboard.py gathers every finished run under ``<runs_dir>/<compare.name>/``.

Every other override given to compare (env=..., experiment=..., act.total_timesteps=...,
hydra/launcher=..., hydra.launcher.n_jobs=...) is passed on to the sweep of jobs.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from darla.config import prepare
from darla.errors import user_facing
from darla.leaderboard import build_leaderboard

log = logging.getLogger("compare")  # Hydra prints it as [compare] (configs/hydra/default.yaml)


def job_command(cfg: DictConfig, forwarded: list[str]) -> list[str]:
    """The multirun of ``all`` that runs every (vision model, seed) job of the comparison."""
    compare = cfg.compare
    models, seeds = list(compare.vision_models), [int(s) for s in compare.seeds]
    if not models or not seeds:
        raise ValueError(f"compare.vision_models ({models}) and compare.seeds ({seeds}) must both be non-empty lists")
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    # Seeds outermost: Hydra runs the product with the last list varying fastest, so an unfinished
    # comparison holds every model at the first seeds rather than the first models at every seed.
    command = [
        sys.executable,
        "-m",
        "darla.stage",
        "all",
        "--multirun",
        f"seed={','.join(map(str, seeds))}",
        f"vision_model={','.join(models)}",
        f"name={compare.name}/${{vision_model.name}}/seed${{seed}}",
        f"runs_dir={cfg.runs_dir}",
        f"hydra.sweep.dir={Path(cfg.runs_dir) / compare.name / '.multirun' / stamp}",
    ]
    return command + forwarded


def run(cfg: DictConfig, forwarded: list[str]) -> Path:
    root = Path(cfg.runs_dir) / cfg.compare.name
    command = job_command(cfg, forwarded)
    log.info("python " + " ".join(command[1:]))
    jobs = subprocess.run(command)
    if not any(root.glob("**/transfer/manifest.json")):
        raise SystemExit(f"[compare] no job finished (the sweep exited with {jobs.returncode}); see its output above")
    rows = build_leaderboard(root, order=list(cfg.compare.vision_models))
    log.info(f"leaderboard of {sum(r['seeds'] for r in rows)} runs: {root / 'leaderboard.md'}")
    log.info((root / "leaderboard.md").read_text())
    if jobs.returncode != 0:
        raise SystemExit(
            f"[compare] some jobs failed (the sweep exited with {jobs.returncode}); the leaderboard holds "
            f"the finished runs. Run the same command again to retry the others."
        )
    return root


@hydra.main(config_path="../configs", config_name="compare", version_base="1.3")
@user_facing("compare")
def main(cfg: DictConfig) -> None:
    prepare(cfg)
    # compare's own keys stay here; everything else the user said goes to the jobs, and the
    # launcher settings (Hydra's own overrides) to the sweep that runs them.
    overrides = HydraConfig.get().overrides
    forwarded = [
        o
        for o in overrides.task
        if not o.lstrip("+~").startswith(("compare.", "runs_dir=", "name=", "seed=", "vision_model="))
    ]
    # Hydra's own: the launcher settings, and the search path where the user's configs (their env,
    # their vision model) live; the plug-in modules come with the environment (PYTHONPATH).
    forwarded += [
        o for o in overrides.hydra if o.startswith(("hydra/launcher=", "hydra.launcher.", "hydra.searchpath="))
    ]
    run(cfg, forwarded)
