"""The task probe of a representation: the data it is fitted and scored on, and its summary.

The probe itself is a pure function of codes and task quantities
(vision_models/metrics/task_probe.py). This module gathers what it reads, for an env whose steps
report a task state (``info["state"]``):

- training frames: the see run's exploration frames (frames.npz, with each frame's state and
  episode), every ``probe.heldout_every``-th episode held out for scoring;
- target frames: ``probe.frames_per_target`` frames of a random policy in each target domain
  (probe_frames/ in the see run, collected once). The vision never trains on them.

The quantities are the env's: its config names a function of the state vectors
(``env.task_quantities``, e.g. envs.collect_good_objects.task_quantities) or, without one, every
varying dimension of the state is a quantity. The summary numbers are the mean MLP score on the
held-out episodes (``heldout``; also per vision domain, ``heldout_by_domain``, and over the source
domains' held-out episodes, ``source``: the rooms the policy will learn in) and over the target
domains (``targets``, and per target group).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from hydra.utils import get_method
from omegaconf import DictConfig

from darla.artifacts import read_npz, save_npz
from darla.config import domain_settings, domains, plain
from darla.errors import UserError
from darla.vec_env import collect_frames
from vision_models.metrics.task_probe import Quantity, latent_importance, probe_scores, state_quantities

HELDOUT = "heldout_episodes"


def quantity_function(env_cfg: DictConfig) -> Callable[[np.ndarray], dict[str, Quantity]]:
    """The env's task quantities as a function of state vectors (its config's ``task_quantities``)."""
    name = env_cfg.get("task_quantities")
    if name is None:
        return state_quantities
    try:
        return get_method(name)
    except Exception as err:
        raise UserError(f"env.task_quantities={name!r} is not a function that can be imported ({err})") from None


@dataclass
class TaskProbe:
    """Frames and task quantities to fit on, and the splits to score on (name -> frames, quantities)."""

    train_frames: np.ndarray
    train: Mapping[str, Quantity]
    tests: Mapping[str, tuple[np.ndarray, Mapping[str, Quantity]]]
    groups: Mapping[str, list[str]]  # target group -> its domains
    source: list[str] = field(default_factory=list)  # the vision domains the policy trains in
    seed: int = 0
    num_train: int = 5000
    hidden: int = 64

    def scores(self, represent: Callable[[np.ndarray], np.ndarray]) -> dict:
        """Probe the representation ``represent`` (uint8 frames -> codes (N, D)) on every split
        (a split without frames, e.g. no held-out episode in a short run, scores None)."""
        result = probe_scores(
            represent(self.train_frames),
            self.train,
            {split: (represent(frames), quantities) for split, (frames, quantities) in self.tests.items()},
            seed=self.seed,
            num_train=self.num_train,
            hidden=self.hidden,
        )

        def mean(splits):
            values = [result["summary"].get(s) for s in splits]
            values = [v for v in values if v is not None]
            return float(np.mean(values)) if values else None

        by_domain = [s for s in self.tests if s.startswith(HELDOUT + "/")]
        targets = [s for s in self.tests if s != HELDOUT and s not in by_domain]
        result["heldout"] = result["summary"].get(HELDOUT)
        result["heldout_by_domain"] = {s.split("/", 1)[1]: result["summary"][s] for s in by_domain}
        result["source"] = mean([f"{HELDOUT}/{d}" for d in self.source])
        result["targets"] = mean(targets)
        result["groups"] = {group: mean(names) for group, names in self.groups.items()}
        return result

    @classmethod
    def of_frames(
        cls,
        data: dict[str, np.ndarray],
        played: dict[str, np.ndarray] | None,
        cfg: DictConfig,
        vision_names: list[str] = (),
    ) -> TaskProbe | None:
        """The probe over exploration frames ``data`` (frames, state, episode, domain: an index into
        ``vision_names``) and, if given, the target frames ``played`` (names, frames, domain, state)
        (see target_frames). The held-out episodes are also scored per vision domain
        (``heldout_episodes/<domain>``): which domains' frames the representation reads the task in."""
        settings = cfg.probe
        quantities = quantity_function(cfg.env)
        held_out = data["episode"] % settings.heldout_every == settings.heldout_every - 1
        if held_out.all():
            return None  # nothing to fit on
        splits = {HELDOUT: (data, held_out)}  # split -> (its arrays, which of their frames)
        for i, name in enumerate(vision_names if "domain" in data else []):
            splits[f"{HELDOUT}/{name}"] = (data, held_out & (data["domain"] == i))
        for i, name in enumerate(played["names"] if played is not None else []):
            splits[str(name)] = (played, played["domain"] == i)
        tests = {  # a split without frames (e.g. a domain with no held-out episode in a short run) scores None
            split: (arrays["frames"][where], quantities(arrays["state"][where]))
            for split, (arrays, where) in splits.items()
            if where.any()
        }
        groups = {
            g: [d for d in names if d in tests]
            for g, names in plain(cfg.env.get("target_groups") or {}).items()
            if any(d in tests for d in names)
        }
        return cls(
            data["frames"][~held_out],
            quantities(data["state"][~held_out]),
            tests,
            groups,
            source=list(cfg.env.get("source") or []),
            seed=settings.seed,
            num_train=settings.num_train,
            hidden=settings.hidden,
        )

    @classmethod
    def of_see_run(cls, see_dir: Path, manifest: dict, cfg: DictConfig, targets: bool = True) -> TaskProbe | None:
        """The probe of a see run, or None when its frames carry no task state (e.g. dSprites).
        Without ``targets``, only held-out exploration episodes are scored (no target frame is read)."""
        frames_path = see_dir / "frames.npz"
        if not frames_path.exists():
            return None
        data = read_npz(frames_path)
        if "state" not in data or "episode" not in data:
            return None
        if cfg.env.id != manifest.get("env_id"):
            raise UserError(
                f"{see_dir} was made on env {manifest.get('env_id')!r}, but this command's env is "
                f"{cfg.env.id!r}; pass the see run's env (env=...) for its task probe"
            )
        vision_names = list(manifest.get("vision_domains") or {})
        return cls.of_frames(data, target_frames(see_dir, cfg) if targets else None, cfg, vision_names)

    @classmethod
    def of_own_frames(cls, out: Path, cfg: DictConfig) -> TaskProbe | None:
        """The probe of an encoder without a see run's frames (the pixel agent's CNN): exploration
        frames of the vision domains (``probe.exploration_frames``, random policy, probe_exploration.npz)
        and target frames, collected once into ``out``. None if the env reports no task state."""
        path = out / "probe_exploration.npz"
        vision = domains(cfg, "vision") if cfg.env.get("vision") else []
        if not path.exists():
            if not vision:
                return None
            data = collect_frames(
                vision, cfg.probe.exploration_frames, cfg.num_envs, cfg.vec_env, cfg.probe.seed, factors=False
            )
            if "state" not in data:
                return None
            save_npz(path, **{k: data[k] for k in ("frames", "domain", "episode", "state")})
        return cls.of_frames(read_npz(path), target_frames(out, cfg), cfg, [d.name for d in vision])


def target_frames(run: Path, cfg: DictConfig) -> dict[str, np.ndarray]:
    """``probe.frames_per_target`` frames of a random policy in each target domain, with their states.

    Each domain's frames are collected once (in-process, seeded by the domain's name) into
    ``run/probe_frames/<domain>-<hash of its settings>.npz``, so runs that evaluate other targets,
    or the same names with other settings, add files and never rewrite these.
    """
    targets = domains(cfg, "targets") if cfg.env.get("targets") else []
    parts = []
    for domain in targets:
        made_with = json.dumps(
            {
                "domain": domain_settings([domain])[domain.name],
                "seed": cfg.probe.seed,
                "frames": cfg.probe.frames_per_target,
            },
            sort_keys=True,
        )
        path = run / "probe_frames" / f"{domain.name}-{hashlib.sha256(made_with.encode()).hexdigest()[:10]}.npz"
        saved = read_npz(path) if path.exists() else None
        if saved is None:
            seed = cfg.probe.seed + zlib.crc32(domain.name.encode()) % 1_000_000
            data = collect_frames([domain], cfg.probe.frames_per_target, 1, "dummy", seed, factors=False)
            if "state" not in data:
                raise UserError(
                    f"target domain {domain.name!r} of env {cfg.env.name!r} reports no task state "
                    f"(info['state']), though the vision domains do; the task probe needs it in every domain"
                )
            saved = {"frames": data["frames"], "state": data["state"], "made_with": np.array(made_with)}
            save_npz(path, **saved)
        parts.append(saved)
    if not parts:
        return {
            "names": np.array([], str),
            "frames": np.zeros((0, 1, 1, 3), np.uint8),
            "domain": np.zeros(0, np.int16),
            "state": np.zeros((0, 1), np.float32),
        }
    return {
        "names": np.array([d.name for d in targets]),
        "frames": np.concatenate([p["frames"] for p in parts]),
        "domain": np.concatenate([np.full(len(p["frames"]), i, np.int16) for i, p in enumerate(parts)]),
        "state": np.concatenate([p["state"] for p in parts]),
    }


def nuisance_latents(
    see_dir: Path, manifest: dict, cfg: DictConfig, represent: Callable[[np.ndarray], np.ndarray]
) -> dict:
    """The latents no task quantity needs, chosen from exploration frames alone (no target frame,
    no reward): a latent is a nuisance when shuffling it lowers no quantity's held-out MLP-probe
    score by ``probe.nuisance_threshold`` or more. Returns {"latents": [...], "importance": {quantity: [...]}}."""
    probe = TaskProbe.of_see_run(see_dir, manifest, cfg, targets=False)
    if probe is None:
        raise UserError(
            f"act.resample_nuisance=true needs the task probe, but the exploration frames of {see_dir} "
            f"carry no task state (info['state'])"
        )
    if HELDOUT not in probe.tests:
        raise UserError(
            f"the exploration frames of {see_dir} have no held-out episode (every "
            f"{cfg.probe.heldout_every}th is held out) to tell which latents the task needs"
        )
    frames, quantities = probe.tests[HELDOUT]
    importance = latent_importance(
        represent(probe.train_frames),
        probe.train,
        represent(frames),
        quantities,
        seed=probe.seed,
        num_train=probe.num_train,
        hidden=probe.hidden,
    )
    if not importance:
        raise UserError(f"the held-out episodes of {see_dir} are too few to tell which latents the task needs")
    needed = np.max(np.stack(list(importance.values())), axis=0)
    return {
        "latents": np.flatnonzero(needed < cfg.probe.nuisance_threshold).tolist(),
        "importance": {name: values.tolist() for name, values in importance.items()},
    }
