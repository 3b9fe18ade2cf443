"""The allowed values of every setting, in one place, checked before a stage does any work.

``validate(cfg)`` runs first in every stage (before a run directory is touched, let alone
deleted by ``overwrite=true``). A bad value is refused with one line that names the key, the
value given and what is allowed. Keys absent from a config (a model without ``beta``) are not
checked; every number under a model, the DAE, the agent and the metrics must also be finite.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from omegaconf import DictConfig, ListConfig, OmegaConf

from darla.errors import UserError
from darla.vision_training import PRECISIONS
from vision_models.beta_tcvae import ESTIMATORS
from vision_models.beta_vae import RECONSTRUCTIONS
from vision_models.dae import DAE_LAYERS

Rule = Callable[[Any], bool]


def integer(low: int | None = None, high: int | None = None) -> tuple[Rule, str]:
    def ok(v):
        return (
            isinstance(v, int) and not isinstance(v, bool) and (low is None or v >= low) and (high is None or v <= high)
        )

    bounds = (f" >= {low}" if low is not None else "") + (f" and <= {high}" if high is not None else "")
    return ok, f"an integer{bounds}"


def number(low: float | None = None, high: float | None = None, above: float | None = None) -> tuple[Rule, str]:
    def ok(v):
        return (
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
            and (low is None or v >= low)
            and (high is None or v <= high)
            and (above is None or v > above)
        )

    bounds = [
        b
        for b in (
            f">= {low}" if low is not None else "",
            f"> {above}" if above is not None else "",
            f"<= {high}" if high is not None else "",
        )
        if b
    ]
    return ok, "a finite number" + (" " + " and ".join(bounds) if bounds else "")


def one_of(*choices: Any) -> tuple[Rule, str]:
    return (lambda v: v in choices), "one of " + ", ".join(map(str, choices))


def boolean() -> tuple[Rule, str]:
    return (lambda v: isinstance(v, bool)), "true or false"


def optional(rule: tuple[Rule, str]) -> tuple[Rule, str]:
    return (lambda v: v is None or rule[0](v)), f"null or {rule[1]}"


def text(pattern: str, what: str) -> tuple[Rule, str]:
    return (lambda v: isinstance(v, str) and re.fullmatch(pattern, v) is not None), what


def int_list(low: int) -> tuple[Rule, str]:
    ok = integer(low)[0]
    return (
        lambda v: isinstance(v, list) and len(v) > 0 and all(ok(x) for x in v)
    ), f"a non-empty list of integers >= {low}"


def name_list() -> tuple[Rule, str]:
    return (
        lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) and x for x in v)
    ), "a non-empty list of names"


def module_list() -> tuple[Rule, str]:
    name = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
    return (
        lambda v: isinstance(v, list) and all(isinstance(x, str) and name.fullmatch(x) for x in v)
    ), "a list of importable package names, e.g. trusted_modules=[my_models]"


RUN_NAME = text(r"(?!/)(?!.*(^|/)\.\.(/|$))[^\0]+", "a non-empty relative name without '..' (runs go under runs_dir)")

RULES: dict[str, tuple[Rule, str]] = {
    "name": RUN_NAME,
    "label": text(r"[\w.+=-]+", "a label of letters, digits and _ . + = -"),
    "runs_dir": text(r"[^\0]+", "a non-empty path"),
    "seed": integer(0, 2**31 - 1),
    "device": text(r"auto|cpu|cuda(:\d+)?|mps", "auto, cpu, cuda or cuda:<index>"),
    "overwrite": boolean(),
    "trusted_modules": module_list(),
    "num_envs": integer(1, 256),
    "vec_env": one_of("subprocess", "dummy"),
    "policy_threads": integer(1),
    "see.frames": integer(1),
    "see.checkpoint_every": integer(1),
    "see.log_every": integer(1),
    "see.precision": one_of(*PRECISIONS),
    "dae.model.latent_dim": integer(1),
    "dae.model.mask_min_frac": number(0, 1),
    "dae.model.mask_max_frac": number(0, 1),
    "dae.train.steps": integer(1),
    "dae.train.batch_size": integer(1),
    "dae.train.lr": number(above=0),
    "vision_model.name": text(r"\w[\w.-]*", "a name"),
    "vision_model.policy_input": one_of("latents", "pixels", "fine_tune", "state"),
    "vision_model.train.steps": integer(1),
    "vision_model.train.batch_size": integer(1),
    "vision_model.train.lr": number(above=0),
    "vision_model.model.latent_dim": integer(1),
    "vision_model.model.beta": number(0),
    "vision_model.model.gamma": number(0),
    "vision_model.model.c_max": number(0),
    "vision_model.model.lambda_od": number(0),
    "vision_model.model.lambda_d": optional(number(0)),
    "vision_model.model.invariance_scale": number(0),
    "vision_model.model.info_weight": number(0),
    "vision_model.model.discriminator_lr": number(above=0),
    "vision_model.model.noise_dim": integer(0),
    "vision_model.model.categories": integer(0),
    "vision_model.model.num_factors": integer(1),
    "vision_model.model.latents_per_factor": integer(1),
    "vision_model.model.factors": integer(1),
    "vision_model.model.sigma": number(above=0),
    "vision_model.model.cd_steps": integer(1),
    "vision_model.model.persistent_chains": integer(0),
    "vision_model.model.mean_field_steps": integer(1),
    "vision_model.model.correspondence_weight": number(0),
    "vision_model.model.init_scale": number(above=0),
    "vision_model.model.iteration_threshold": integer(1),
    "vision_model.model.dataset_size": integer(1),
    "vision_model.model.mask_min_frac": number(0, 1),
    "vision_model.model.mask_max_frac": number(0, 1),
    "vision_model.model.reconstruction": one_of(*RECONSTRUCTIONS),
    "vision_model.model.dae_layer": one_of(*DAE_LAYERS),
    "vision_model.model.estimator": one_of(*ESTIMATORS),
    "vision_model.model.dip_type": one_of("i", "ii"),
    "agent.algorithm": one_of("PPO", "DQN"),
    "agent.hyperparameters.learning_rate": number(above=0),
    "agent.hyperparameters.n_steps": integer(1),
    "agent.hyperparameters.batch_size": integer(1),
    "agent.hyperparameters.n_epochs": integer(1),
    "agent.hyperparameters.gamma": number(0, 1),
    "agent.hyperparameters.gae_lambda": number(0, 1),
    "agent.hyperparameters.clip_range": number(above=0),
    "agent.hyperparameters.ent_coef": number(0),
    "agent.hyperparameters.vf_coef": number(0),
    "agent.hyperparameters.max_grad_norm": number(above=0),
    "agent.hyperparameters.buffer_size": integer(1),
    "agent.hyperparameters.learning_starts": integer(0),
    "agent.hyperparameters.train_freq": integer(1),
    "agent.hyperparameters.gradient_steps": integer(1),
    "agent.hyperparameters.target_update_interval": integer(1),
    "agent.hyperparameters.exploration_fraction": number(0, 1),
    "agent.hyperparameters.exploration_initial_eps": number(0, 1),
    "agent.hyperparameters.exploration_final_eps": number(0, 1),
    "act.total_timesteps": integer(1),
    "act.eval_every": integer(1),
    "act.eval_episodes": integer(1),
    "act.deterministic": boolean(),
    "act.frame_stack": integer(1, 64),
    "act.normalize": boolean(),
    "act.resample_nuisance": boolean(),
    "probe.nuisance_threshold": number(0, 1),
    "transfer.episodes": integer(1),
    "transfer.seed": integer(0, 2**31 - 1),
    "transfer.random_policy": boolean(),
    "metrics.seed": integer(0),
    "metrics.encode_batch_size": integer(1),
    "metrics.compute.dci.backend": one_of("fast", "reference"),
    "probe.seed": integer(0, 2**31 - 1),
    "probe.heldout_every": integer(2),
    "probe.frames_per_target": integer(1),
    "probe.exploration_frames": integer(10),
    "probe.num_train": integer(10),
    "probe.hidden": integer(1),
    "env.task_quantities": text(r"[A-Za-z_][\w.]*", "a dotted path to a function"),
    "video.episodes": integer(1),
    "video.seed": integer(0, 2**31 - 1),
    "video.format": one_of("gif", "mp4"),
    "video.fps": integer(1),
    "video.scale": integer(1),
    "scan.out": optional(text(r"[^\0]+", "a non-empty path")),
    "scan.factors": name_list(),
    "scan.points_per_combination": optional(integer(1)),
    "scan.test_fraction": number(0, 0.9),
    "scan.samples": integer(2),
    "scan.log_every": integer(1),
    "scan.symbol_vae.hidden": integer(1),
    "scan.symbol_vae.beta": number(0),
    "scan.symbol_vae.forward_kl_weight": number(0),
    "scan.train.steps": integer(1),
    "scan.train.batch_size": integer(1),
    "scan.train.lr": number(above=0),
    "scan.recombination.hidden": integer(1),
    "scan.recombination.steps": integer(1),
    "scan.recombination.batch_size": integer(1),
    "scan.recombination.lr": number(above=0),
    "scan.recombination.eval_triples": integer(1),
    "scan.judge.steps": integer(1),
    "scan.judge.batch_size": integer(1),
    "scan.judge.lr": number(above=0),
    "scan.judge.test_fraction": number(0, 0.9),
    "compare.vision_models": name_list(),
    "compare.seeds": int_list(0),
}

# Subtrees whose every number must be finite, and under metrics.compute every integer a size >= 1.
FINITE = ("vision_model.model", "dae", "agent.hyperparameters", "metrics", "scan")


def _show(value: Any) -> str:
    return "null" if value is None else str(value) if not isinstance(value, str) else repr(value)


def _select(cfg: DictConfig, key: str) -> tuple[bool, Any]:
    missing = object()
    try:
        node = OmegaConf.select(cfg, key, default=missing, throw_on_missing=True)
    except Exception as err:  # an interpolation that does not resolve
        raise UserError(f"{key}: {err}") from None
    if node is missing:
        return False, None
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    return True, node


def problems(cfg: DictConfig) -> list[str]:
    """Every setting of ``cfg`` that is not allowed, as 'key=value is not allowed: expected ...'."""
    found = []

    def refuse(key: str, value: Any, allowed: str) -> None:
        if any(f.startswith(f"{key}=") for f in found):
            return  # one message per key
        found.append(f"{key}={_show(value)} is not allowed: expected {allowed}")

    for key, (ok, allowed) in RULES.items():
        if key.startswith("vision_model.model.") and cfg.get("vision_model", {}).get("model") is None:
            continue
        present, value = _select(cfg, key)
        if present and not ok(value):
            refuse(key, value, allowed)

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}", v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(f"{prefix}[{i}]", v)
        elif isinstance(node, float) and not math.isfinite(node):
            refuse(prefix, node, "a finite number")
        elif (
            prefix.startswith("metrics.compute.") and isinstance(node, int) and not isinstance(node, bool) and node < 1
        ):
            refuse(prefix, node, "an integer >= 1 (a sample size)")

    for root in FINITE:
        present, value = _select(cfg, root)
        if present:
            walk(root, value)

    found += _cross_field(cfg)
    return list(dict.fromkeys(found))


def _cross_field(cfg: DictConfig) -> list[str]:
    found = []
    present, act = _select(cfg, "act")
    if present and isinstance(act, dict):
        every, total = act.get("eval_every"), act.get("total_timesteps")
        if integer(1)[0](every) and integer(1)[0](total) and every > total:
            found.append(f"act.eval_every={every} is not allowed: expected at most act.total_timesteps={total}")
    for prefix in ("dae.model", "vision_model.model"):
        present, model = _select(cfg, prefix)
        if present and isinstance(model, dict):
            low, high = model.get("mask_min_frac"), model.get("mask_max_frac")
            if number(0, 1)[0](low) and number(0, 1)[0](high) and low > high:
                found.append(
                    f"{prefix}.mask_min_frac={low} is not allowed: expected at most {prefix}.mask_max_frac={high}"
                )
    present, compute = _select(cfg, "metrics.compute")
    for name, spec in (compute if present and isinstance(compute, dict) else {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("_target_"), str):
            found.append(
                f"metrics.compute.{name}={_show(spec)} is not allowed: expected a metric of configs/metric/ "
                f"(choose with metric=[{name},...], then set its sizes as metrics.compute.{name}.<size>=...) "
                f"or a mapping whose _target_ names the metric's function"
            )
    present, weights = _select(cfg, "see.domain_weights")
    _, vision = _select(cfg, "env.vision")
    if present and weights is not None:
        names = vision if isinstance(vision, list) else []
        bad = (
            not isinstance(weights, dict)
            or any(name not in names for name in weights)
            or not all(number(above=0)[0](w) for w in weights.values())
        )
        if bad:
            given = (
                "{" + ", ".join(f"{k}: {v}" for k, v in weights.items()) + "}" if isinstance(weights, dict) else weights
            )
            found.append(
                f"see.domain_weights={given} is not allowed: expected {{domain: weight > 0}} naming "
                f"domains of env.vision ({', '.join(map(str, names)) or 'none'}); the vision never sees others"
            )
    _, stack = _select(cfg, "act.frame_stack")
    _, policy_input = _select(cfg, "vision_model.policy_input")
    if policy_input == "fine_tune" and integer(2)[0](stack):
        found.append(
            f"act.frame_stack={stack} is not allowed with vision_model.policy_input=fine_tune: expected 1 "
            f"(the fine-tuned encoder reads one frame)"
        )
    for key, does in (("act.normalize", "standardises"), ("act.resample_nuisance", "redraws some of")):
        if _select(cfg, key)[1] is True and policy_input not in (None, "latents"):
            found.append(
                f"{key}=true is not allowed with vision_model.policy_input={policy_input}: it "
                f"{does} a frozen vision's latents (policy_input=latents)"
            )
    present, hp = _select(cfg, "agent.hyperparameters")
    _, num_envs = _select(cfg, "num_envs")
    _, algorithm = _select(cfg, "agent.algorithm")
    if (
        present
        and algorithm == "PPO"
        and integer(1)[0](hp.get("n_steps"))
        and integer(1)[0](num_envs)
        and hp["n_steps"] * num_envs < 2
    ):
        found.append(
            f"agent.hyperparameters.n_steps={hp['n_steps']} is not allowed with num_envs={num_envs}: "
            f"PPO needs n_steps x num_envs >= 2"
        )
    return found


def validate(cfg: DictConfig) -> None:
    """Refuse ``cfg`` (UserError, one line) if any setting is not allowed."""
    found = problems(cfg)
    if found:
        raise UserError("; ".join(found))
