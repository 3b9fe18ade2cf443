"""What the stages share about configuration: domains, device, and starting or resuming a run.

A stage writes ``config.json`` (the part of the config its result depends on) when it starts
and ``manifest.json`` when it finishes. Running the same command again resumes an unfinished
run or skips a finished one; a different config in the same directory is refused (earlier
results stay intact) unless ``overwrite=true``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from omegaconf import DictConfig, OmegaConf

from darla.artifacts import MANIFEST, read_json, write_json
from envs.checks import check_domain
from envs.domains import Domain, domains_from_config

STARTED = "config.json"


def domains(cfg: DictConfig, role: str) -> list[Domain]:
    """The domains the experiment lists under ``env.<role>`` (vision, source or targets).

    The first of them is built once and checked (envs/checks.py: image observations of
    ``env.observation_shape``, an action space ``agent.algorithm`` can use), so an env that does
    not fit is refused before any training.
    """
    if role not in cfg.env:
        raise ValueError(f"env config {cfg.env.get('name', '?')!r} has no {role!r} list of domains")
    if role != "vision" and not cfg.env[role]:
        raise ValueError(f"env {cfg.env.get('name', '?')!r} has no {role} domains: it is a vision-only dataset, "
                         f"on which only `see` and `diagnose` run")
    table = OmegaConf.to_container(cfg.env.domains, resolve=True)
    listed = domains_from_config(cfg.env.id, OmegaConf.to_container(cfg.env.kwargs, resolve=True), table,
                                 list(cfg.env[role]), role, plain(cfg.env.get("wrappers")))
    if cfg.env.id is not None and listed:
        check_domain(listed[0], list(cfg.env.observation_shape), cfg.agent.algorithm)
    return listed


def domain_settings(ds: list[Domain]) -> dict[str, Any]:
    """What a stage's result depends on in its domains: env id, kwargs and shifts (when there are any)."""
    return {d.name: {"env_id": d.env_id, **dict(d.kwargs), **({"wrappers": dict(d.wrappers)} if d.wrappers else {})}
            for d in ds}


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r} was asked for but torch sees no CUDA device; use device=cpu or auto")
    return torch.device(spec)


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def start_run(out: Path, settings: Mapping[str, Any], overwrite: bool) -> bool:
    """Prepare ``out`` for a stage whose result depends on ``settings``.

    Returns True when a finished run with these settings is already there (nothing to do).
    """
    started = out / STARTED
    if started.exists():
        previous = read_json(started)
        if previous == settings:
            return (out / MANIFEST).exists()
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if not overwrite:
            raise ValueError(f"{out} already holds a run with different settings ({', '.join(changed)} differ); "
                             f"choose another name=... or pass overwrite=true to replace it")
        for child in out.iterdir():  # keep Hydra's own logs of this invocation
            if child.name not in {".hydra"} and not child.name.endswith(".log"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    write_json(started, settings)
    return False
