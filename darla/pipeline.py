"""``all``: see → act → transfer in one go, every stage reading the same composed config.

A stage that already finished with the same settings is skipped, so re-running ``all`` after
an interruption continues where it stopped. With vision_model=pixels there is no see stage, and
none either when ``act.see_run`` names another run: its vision is reused (act-only variants, such
as the ablations of configs/experiment/, share one see run per seed).
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from darla import act, see, transfer
from darla.errors import user_facing


def run(cfg: DictConfig) -> None:
    if cfg.vision_model.model is not None and str(cfg.act.see_run) == str(cfg.name):
        see.run(cfg)
    act.run(cfg)
    transfer.run(cfg)


@hydra.main(config_path="../configs", config_name="all", version_base="1.3")
@user_facing("all")
def main(cfg: DictConfig) -> None:
    run(cfg)
