"""compare: which vision makes a policy survive the shift? see → act → transfer for every vision
model × seed, then one leaderboard over all of them.

compare is an ordinary Hydra multirun of the ``all`` pipeline: configs/compare.yaml sets
``hydra.mode: MULTIRUN`` and sweeps ``seed`` over ``compare.seeds`` and ``vision_model`` over
``compare.vision_models`` (seeds outermost, so an unfinished comparison holds every model at the
first seeds). Any Hydra launcher runs the jobs: one after another by default, or in parallel with
``hydra/launcher=local_pool`` (joblib), ``local`` (submitit), ``slurm`` or ``ray_cluster``.
Job ``(model, seed)`` writes to ``<runs_dir>/<compare.name>/<model>/seed<seed>/{see,act,transfer}``.
A finished stage is never run again and an unfinished one resumes, so re-running an interrupted
comparison continues it. When the sweep ends, the Hydra callback :class:`Leaderboard` gathers
every finished run under ``<runs_dir>/<compare.name>/`` (darla/leaderboard.py).

A job that fails is logged and left out, so the others still run and the leaderboard holds what
finished; the command then exits with an error naming the failed jobs. Jobs may run in other
processes or on other nodes, so a failure is recorded as a file, ``<compare dir>/.failed/<model>_seed<k>``
(its error), which the job removes when it next succeeds.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, ListConfig, OmegaConf

from darla import pipeline, settings
from darla.artifacts import MANIFEST, atomic_write
from darla.errors import EXIT_CODE, USER_ERRORS
from darla.leaderboard import build_leaderboard

log = logging.getLogger("compare")  # Hydra prints it as [compare] (configs/hydra/default.yaml)


def sweep_values(values, key: str) -> str:
    """``a,b,c`` from the list at ``key``, for hydra.sweeper.params (compare.yaml): the sweep is read off
    compare's keys. Checked here, in the launching process, before any job starts."""
    values = OmegaConf.to_container(values) if isinstance(values, ListConfig) else values
    ok, allowed = settings.RULES[key]
    if not ok(values):
        print(f"darla compare: error: {key}={values} is not allowed: expected {allowed}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CODE)
    return ",".join(str(v) for v in values)


OmegaConf.register_new_resolver("sweep_values", sweep_values, replace=True)


def failure_record(cfg: DictConfig, model: str, seed: int) -> Path:
    return Path(cfg.runs_dir) / cfg.compare.name / ".failed" / f"{model}_seed{seed}"


def unfinished(cfg: DictConfig) -> list[str]:
    """The jobs of the comparison that failed this time or have no finished transfer."""
    root = Path(cfg.runs_dir) / cfg.compare.name
    return [
        f"{model} seed {seed}"
        for seed in cfg.compare.seeds
        for model in cfg.compare.vision_models
        if failure_record(cfg, model, seed).exists()
        or not (root / model / f"seed{seed}" / "transfer" / MANIFEST).exists()
    ]


class Leaderboard(Callback):
    """At the end of compare's sweep: the leaderboard of every finished run, and an error naming the
    jobs that did not finish."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        root = Path(config.runs_dir) / config.compare.name
        missing = unfinished(config)
        if not any(root.glob("*/seed*/transfer/manifest.json")):
            sys.exit(f"darla compare: error: no job finished ({', '.join(missing)}); see the jobs' output above")
        rows = build_leaderboard(root, order=list(config.compare.vision_models))
        log.info(f"leaderboard of {sum(r['seeds'] for r in rows)} runs: {root / 'leaderboard.md'}")
        log.info((root / "leaderboard.md").read_text())
        if missing:
            sys.exit(
                f"darla compare: error: {len(missing)} jobs did not finish ({', '.join(missing)}); the "
                f"leaderboard holds the finished runs. Run the same command again to retry the others."
            )


@hydra.main(config_path="../configs", config_name="compare", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """One job of the sweep: ``all`` for one (vision model, seed). A failure is logged, not raised,
    so that the sweep goes on and the callback still makes the leaderboard."""
    record = failure_record(cfg, cfg.vision_model.name, int(cfg.seed))
    try:
        pipeline.run(cfg)
    except USER_ERRORS as err:
        error = f"{cfg.name}: {err}"
    except Exception:
        error = f"{cfg.name} failed:\n{traceback.format_exc()}"
    else:
        record.unlink(missing_ok=True)
        return
    log.error(error)
    atomic_write(record, lambda tmp: tmp.write_text(error + "\n"))
