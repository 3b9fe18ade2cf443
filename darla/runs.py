"""Finished runs, read back: what every later stage loads from an earlier one.

- load_vision_model: a see run's vision model (classes checked by darla/trust.py, weights from safetensors);
- read_act_run, load_policy: an act run's manifest and its trained SB3 agent;
- build_agent: a fresh SB3 agent from an agent config (act trains it, load_policy fills it);
- space_record: an action space as data, to check that a later stage's env acts the same way.

What a policy reads (its PolicyInput) is darla/policy_inputs.py's. No stage imports another: each
reads its parents through this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from omegaconf import DictConfig
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from darla.artifacts import MANIFEST, check_parent, load_weights, pretrained_settings, read_manifest
from darla.config import plain
from darla.errors import UserError
from darla.trust import build_recorded
from vision_models.base import VisionModel

if TYPE_CHECKING:
    from darla.policy_inputs import PolicyInput

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "DQN": DQN}


def load_vision_model(see_dir: Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained vision model from its see run: classes named in the manifest (checked by
    darla/trust.py, never imported from anywhere else), weights from safetensors."""
    manifest = read_manifest(see_dir, "see")
    source = see_dir / MANIFEST
    try:
        vm_spec = manifest["vision_model"]["model"]
        part_specs = {name: settings["model"] for name, settings in pretrained_settings(manifest).items()}
    except (KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{source} lacks the vision model's settings ({err}); not a darla see run") from None
    parts = {}
    for name, spec in part_specs.items():  # frozen parts (the DAE of beta_vae_dae), each in its own file
        parts[name] = build_recorded(spec, VisionModel, f"pretrained.{name}.model", source)
        load_weights(see_dir / f"{name}.safetensors", parts[name])
    model = build_recorded(vm_spec, VisionModel, "vision_model.model", source, **parts)
    load_weights(see_dir / "vision_model.safetensors", model)
    if model.latent_dim != manifest.get("latent_dim"):
        raise UserError(
            f"{source}: latent_dim is {manifest.get('latent_dim')!r} but the model it names has "
            f"{model.latent_dim} latents"
        )
    return model.eval().requires_grad_(False), manifest


def build_agent(
    agent_cfg, env: VecEnv, seed: int, device: torch.device, view: PolicyInput, tensorboard_log: Path | None = None
) -> BaseAlgorithm:
    """A fresh SB3 agent from its config, with the policy class ``view`` reads through."""
    algorithm = ALGORITHMS.get(agent_cfg.algorithm)
    if algorithm is None:
        raise UserError(f"agent.algorithm={agent_cfg.algorithm!r} is not known; expected one of {sorted(ALGORITHMS)}")
    hyperparameters = plain(agent_cfg.hyperparameters)
    hyperparameters["policy_kwargs"] = {**hyperparameters.get("policy_kwargs", {}), **view.policy_kwargs()}
    return algorithm(
        view.policy,
        env,
        seed=seed,
        device=device,
        verbose=0,
        tensorboard_log=str(tensorboard_log) if tensorboard_log else None,
        **hyperparameters,
    )


def space_record(space) -> dict:
    """An action space as data, to check that a later stage's env acts the same way."""
    return {
        "type": type(space).__name__,
        "shape": list(space.shape or ()),
        **({"n": int(space.n)} if hasattr(space, "n") else {}),
    }


def read_act_run(act_dir: Path) -> dict:
    """The manifest of a finished act run, after checking it and its policy file against its content hash."""
    manifest = read_manifest(act_dir, "act")
    if manifest.get("agent", {}).get("algorithm") not in ALGORITHMS:
        raise UserError(
            f"{act_dir / MANIFEST}: agent.algorithm is {manifest.get('agent', {}).get('algorithm')!r}; "
            f"expected one of {sorted(ALGORITHMS)}"
        )
    return manifest


def load_policy(act_dir: Path, manifest: dict, view: PolicyInput, env: VecEnv, device: torch.device) -> BaseAlgorithm:
    """Rebuild the trained agent from its act run: config from the manifest (see read_act_run),
    parameters from safetensors."""
    check_parent(
        act_dir,
        manifest,
        {"observation_shape": list(env.observation_space.shape), "action_space": space_record(env.action_space)},
    )
    agent = build_agent(DictConfig(manifest["agent"]), env, seed=0, device=device, view=view)
    load_weights(act_dir / "policy.safetensors", agent.policy)
    agent.policy.set_training_mode(False)
    return agent
