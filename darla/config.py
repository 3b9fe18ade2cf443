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

from darla import settings, trust
from darla.artifacts import MANIFEST, atomic_write, read_json, write_json
from darla.errors import UserError
from darla.latent_env import check_state
from envs.checks import check_domain
from envs.domains import Domain, domains_from_config

STARTED = "config.json"


def prepare(cfg: DictConfig) -> None:
    """What every stage does first: refuse bad settings (darla/settings.py) and let run directories
    name only the classes this config makes available (darla/trust.py)."""
    settings.validate(cfg)
    trust.allow_config(cfg)


def check_env(
    parent: Path,
    manifest: Mapping[str, Any],
    cfg: DictConfig,
    domain_key: str | None = None,
    names: list[str] | None = None,
) -> None:
    """Refuse a parent run made on another env than this stage's (env id), or on other domains."""
    have, want = manifest.get("env_id"), cfg.env.id
    if have != want:
        raise UserError(
            f"parent {parent} was made on env {have!r} ({manifest.get('env_name', '?')}); this stage runs "
            f"env {want!r} ({cfg.env.name}): pass the env=... it was made with, or another parent"
        )
    if domain_key is not None and list(manifest.get(domain_key) or []) != list(names or []):
        raise UserError(
            f"parent {parent} has {domain_key} {manifest.get(domain_key)}; this stage has {names}: "
            f"pass the same env.{domain_key.split('_')[0]} it was made with, or another parent"
        )


def named_domains(cfg: DictConfig, names: list[str], role: str) -> list[Domain]:
    """The env's domains of these names, as its config defines them (``role`` names the list in errors)."""
    return domains_from_config(
        cfg.env.id,
        OmegaConf.to_container(cfg.env.kwargs, resolve=True),
        OmegaConf.to_container(cfg.env.domains, resolve=True),
        names,
        role,
        plain(cfg.env.get("wrappers")),
        shift_targets(cfg),
    )


def domains(cfg: DictConfig, role: str) -> list[Domain]:
    """The domains the experiment lists under ``env.<role>`` (vision, source or targets).

    The first of them is built once and checked (envs/checks.py: image observations of
    ``env.observation_shape``, an action space ``agent.algorithm`` can use), so an env that does
    not fit is refused before any training.
    """
    if role not in cfg.env:
        raise ValueError(f"env config {cfg.env.get('name', '?')!r} has no {role!r} list of domains")
    if role != "vision" and not cfg.env[role]:
        raise ValueError(
            f"env {cfg.env.get('name', '?')!r} has no {role} domains: it is a vision-only dataset, "
            f"on which only `see` and `diagnose` run"
        )
    listed = named_domains(cfg, list(cfg.env[role]), role)
    if cfg.env.id is not None and listed:
        check_domain(listed[0], list(cfg.env.observation_shape), cfg.agent.algorithm)
        if role != "vision" and cfg.vision_model.get("policy_input") == "state":
            check_state(listed[0])  # the oracle: here, not first in an env worker
    return listed


def shift_targets(cfg: DictConfig) -> dict[str, str]:
    """The appearance shifts domains may name (configs/shift/, selected in the defaults list): name -> class."""
    targets = {}
    for name, spec in (plain(cfg.get("shifts")) or {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("_target_"), str):
            raise UserError(f"shifts.{name}={spec!r} is not allowed: expected a mapping whose _target_ names its class")
        targets[name] = spec["_target_"]
    return targets


def domain_settings(ds: list[Domain]) -> dict[str, Any]:
    """What a stage's result depends on in its domains: env id, kwargs and shifts (when there are any)."""
    return {
        d.name: {"env_id": d.env_id, **dict(d.kwargs), **({"wrappers": dict(d.wrappers)} if d.wrappers else {})}
        for d in ds
    }


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r} was asked for but torch sees no CUDA device; use device=cpu or auto")
    return torch.device(spec)


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def record_invocation(out: Path, cfg: DictConfig) -> None:
    """Hydra's record of this invocation (composed config, command-line overrides) in ``out/.hydra/``.

    Written by the stage once its settings are accepted (``hydra.output_subdir`` is null), so a
    refused command leaves the record of the run it was refused by untouched.
    """
    from hydra.core.hydra_config import HydraConfig

    record = out / ".hydra"
    record.mkdir(parents=True, exist_ok=True)
    atomic_write(record / "config.yaml", lambda tmp: tmp.write_text(OmegaConf.to_yaml(cfg)))
    if HydraConfig.initialized():
        overrides = list(HydraConfig.get().overrides.task)
        atomic_write(record / "overrides.yaml", lambda tmp: tmp.write_text(OmegaConf.to_yaml(overrides)))


def _remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary files a killed ``atomic_write`` left (never under a final name)."""
    for stale in out.rglob(".*.tmp"):
        stale.unlink(missing_ok=True)


def start_run(out: Path, settings: Mapping[str, Any], cfg: DictConfig) -> bool:
    """Prepare ``out`` for a stage whose result depends on ``settings``.

    Returns True when a finished run with these settings is already there (nothing to do).
    A run with other settings is refused, or with ``overwrite=true`` replaced.
    """
    overwrite = cfg.overwrite
    started = out / STARTED
    if started.exists():
        previous = read_json(started)
        if previous == settings:
            if (out / MANIFEST).exists():
                return True
            _remove_stale_temporaries(out)  # resuming a killed run
            record_invocation(out, cfg)
            return False
        changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
        if not overwrite:
            raise UserError(
                f"{out} already holds a run with different settings ({', '.join(changed)} differ); "
                f"choose another name=... or pass overwrite=true to replace it"
            )
        for child in out.iterdir():  # keep Hydra's log of this invocation
            if not child.name.endswith(".log"):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    write_json(started, settings)
    record_invocation(out, cfg)
    return False
