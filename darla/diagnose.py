"""``python -m darla.stage diagnose <see run>``: rewrite a finished see run's diagnostics in place
(pictures, metrics, task probe: darla/vision_report.py), e.g. with other metric settings. The
weights and the see run's content hash are never touched.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from darla.artifacts import MANIFEST, find_parent, read_json
from darla.config import prepare, resolve_device
from darla.errors import user_facing
from darla.runs import load_vision_model
from darla.vision_report import diagnose_see_run, make_factor_dataset

log = logging.getLogger("diagnose")  # Hydra prints it as [diagnose] (configs/hydra/default.yaml)


def run(cfg: DictConfig) -> Path:
    prepare(cfg)
    see_dir = find_parent(cfg.see_run, cfg.runs_dir, "see")
    model, manifest = load_vision_model(see_dir)
    dataset = make_factor_dataset(manifest.get("factor_dataset"), see_dir / MANIFEST)
    device = resolve_device(cfg.device)
    # The see run's own seed (its metrics' samples, its object frames), so that diagnosing again gives
    # the numbers the see run wrote, whatever this command's seed.
    cfg.seed = int(read_json(see_dir / "config.json")["seed"])
    start = time.perf_counter()
    diagnose_see_run(model, see_dir, manifest, dataset, cfg, device)
    log.info(f"wrote the diagnostics of {see_dir} in {time.perf_counter() - start:.1f}s")
    return see_dir


@hydra.main(config_path="../configs", config_name="diagnose", version_base="1.3")
@user_facing("diagnose")
def main(cfg: DictConfig) -> None:
    run(cfg)
