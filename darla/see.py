"""Stage 1, see: learn visual primitives without rewards.

1. Collect frames from the vision domains with a uniformly random policy (DARLA trains its
   vision on exploration data, never on rewards), stored as uint8 with their ground-truth factors.
   An env without vision domains but with a factor dataset (dSprites) is sampled instead.
2. If the model needs one (β-VAE_DAE), train the denoising autoencoder J first, then freeze it.
3. Train the vision model (on factor sweeps for models that ask for them, DC-IGN).
4. Diagnose it (darla/vision_report.py): reconstructions per domain, latent traversals sorted by KL,
   KL per latent, when the env has a factor dataset the disentanglement metrics, and when it
   reports a task state the task probe (darla/probe.py; frames of the target domains are
   collected for it, never trained on).

Outputs in runs/<name>/see/: frames.npz, probe_frames/, dae.safetensors, vision_model.safetensors, the
diagnostics (reconstructions.png, traversals.png/.gif, kl_per_dim.png, latents.json, metrics.json,
factor_response.png) and manifest.json. Each step is skipped when its output is already there,
and training resumes from its checkpoint, so an interrupted run continues when the same command
is run again.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from darla.artifacts import (
    load_weights,
    read_npz,
    run_dir,
    save_npz,
    save_weights,
    versions,
    write_json,
    write_manifest,
)
from darla.config import domain_settings, domains, plain, prepare, resolve_device, start_run
from darla.errors import UserError, user_facing
from darla.vec_env import collect_frames, make_vec_env
from darla.vision_report import ACTING_FILE, diagnose_see_run, make_factor_dataset
from darla.vision_training import FactorBatches, FrameBatches, TransitionBatches, train_vision

log = logging.getLogger("see")  # Hydra prints it as [see] (configs/hydra/default.yaml)


def pretrained_parts(vision_model_cfg) -> tuple[str, ...]:
    """The parts the model's class trains first and freezes (``VisionModel.pretrained``), e.g. ("dae",)."""
    return tuple(get_class(vision_model_cfg.model._target_).pretrained)


def build_model(vision_model_cfg, **parts: torch.nn.Module) -> torch.nn.Module:
    """Instantiate a vision model from its YAML (``_target_``), handing it its trained, frozen parts."""
    return instantiate(vision_model_cfg.model, **parts)


def run(cfg: DictConfig) -> Path:
    prepare(cfg)
    out = run_dir(cfg.runs_dir, cfg.name, "see")
    vm = cfg.vision_model
    if vm.model is None:
        raise ValueError(
            f"vision_model={vm.name} has no vision stage (its policy reads "
            f"{vm.get('policy_input', 'pixels')}, not a vision model's latents); "
            f"run `python -m darla.stage act vision_model={vm.name}`"
        )
    vision_domains = domains(cfg, "vision") if cfg.env.vision else []
    dataset_spec = cfg.env.get("factor_dataset")
    if not vision_domains and dataset_spec is None:
        raise ValueError(
            f"env {cfg.env.name!r} lists no vision domains and has no factor_dataset: see has nothing to learn from"
        )
    dataset = make_factor_dataset(dataset_spec)
    if dataset is not None and "num_factors" in vm.model:
        # Models whose latents are assigned to ground-truth factors (dcign) take the count from the data.
        vm.model.num_factors = len(dataset.factor_sizes)
    if get_class(vm.model._target_).batches == "transitions":  # it learns by acting (ICF)
        if not vision_domains:
            raise UserError(
                f"vision_model={vm.name} learns by acting in the env's vision domains, but env "
                f"{cfg.env.name!r} lists none (a factor dataset alone cannot be acted in)"
            )
        if "num_actions" in vm.model:  # like num_factors: taken from the env (a discrete action space)
            probe_env = vision_domains[0].make()
            space = probe_env.action_space
            probe_env.close()
            if not hasattr(space, "n"):
                raise UserError(
                    f"vision_model={vm.name} needs a discrete action space; env {cfg.env.name!r} has {space}"
                )
            vm.model.num_actions = int(space.n)
    # Uniform domains (no see.domain_weights) are recorded as before the option existed, so that
    # earlier see runs still count as finished with these settings.
    weights = plain(cfg.see.get("domain_weights")) or None
    settings = {
        "vision_domains": domain_settings(vision_domains),
        "factor_dataset": plain(dataset_spec),
        "see": {k: v for k, v in plain(cfg.see).items() if k != "domain_weights" or weights},
        "seed": cfg.seed,
        "num_envs": cfg.num_envs,
        "vision_model": plain(vm),
        "pretrained": {name: plain(cfg[name]) for name in pretrained_parts(vm)},
    }
    device = resolve_device(cfg.device)
    if start_run(out, settings, cfg):
        log.info(f"{out} is finished with these settings; nothing to do")
        return out
    timings = {}

    # 1. Training images: exploration frames from the vision domains, or else draws from the
    #    env's factor dataset (dSprites), rendered batch by batch over its whole grid.
    if vision_domains:
        frames_path = out / "frames.npz"
        if not frames_path.exists():
            t0 = time.perf_counter()
            data = collect_frames(vision_domains, cfg.see.frames, cfg.num_envs, cfg.vec_env, cfg.seed, weights=weights)
            timings["collect_s"] = time.perf_counter() - t0
            log.info(f"collected {len(data['frames'])} frames in {timings['collect_s']:.1f}s")
            save_npz(frames_path, **data)
        frames = read_npz(frames_path, "frames")["frames"]
        image_shape, images_source = frames.shape[1:], FrameBatches(frames)
    else:
        image_shape, images_source = tuple(dataset.image_shape), FactorBatches(dataset)
    input_shape = [int(image_shape[2]), int(image_shape[0]), int(image_shape[1])]
    if list(cfg.env.observation_shape) != input_shape:
        raise UserError(
            f"env.observation_shape is {list(cfg.env.observation_shape)} but the images of env "
            f"{cfg.env.name!r} are {input_shape} (C, H, W); fix observation_shape in its env config"
        )

    def train(model, train_cfg, label, batches):
        t0 = time.perf_counter()
        train_vision(
            model,
            batches,
            steps=train_cfg.steps,
            batch_size=train_cfg.batch_size,
            lr=train_cfg.lr,
            checkpoint=out / "checkpoints" / f"{label}.safetensors",
            seed=cfg.seed,
            device=device,
            checkpoint_every=cfg.see.checkpoint_every,
            log_every=cfg.see.log_every,
            log_dir=out / "tensorboard",
            label=label,
            precision=cfg.see.precision,
        )
        timings[f"train_{label}_s"] = time.perf_counter() - t0
        return model

    # 2. The parts the model trains first and freezes (the denoising autoencoder J of beta_vae_dae),
    #    each from its config group. Each model's initial weights come from its own seed, so a
    #    resumed run builds them as an uninterrupted one.
    parts = {}
    for name in settings["pretrained"]:
        torch.manual_seed(cfg.seed)
        parts[name] = instantiate(cfg[name].model)
        if (out / f"{name}.safetensors").exists():
            load_weights(out / f"{name}.safetensors", parts[name])
        else:
            save_weights(out / f"{name}.safetensors", train(parts[name], cfg[name].train, name, images_source))
        parts[name].to(device)

    # 3. The vision model itself, on the batches it asks for.
    torch.manual_seed(cfg.seed + 1)
    model = build_model(vm, **parts)
    if model.batches == "factor_sweeps":
        if dataset is None:
            raise ValueError(
                f"vision_model={vm.name} trains on factor sweeps, but env {cfg.env.name!r} has no "
                f"factor_dataset to render them from"
            )
        batches = FactorBatches(dataset, "factor_sweeps")
    elif model.batches == "transitions":
        # The model's own behaviour collects its experience in the vision domains while it trains.
        venv = make_vec_env(vision_domains, cfg.num_envs, cfg.vec_env, cfg.seed, weights=weights)
        batches = TransitionBatches(venv, model.to(device), **plain(vm.get("collect") or {}))
    else:
        batches = images_source
    try:
        save_weights(out / "vision_model.safetensors", train(model, vm.train, "vision_model", batches))
        if model.batches == "transitions" and not (out / ACTING_FILE).exists():
            write_json(out / ACTING_FILE, batches.report(torch.Generator().manual_seed(cfg.seed + 2), device))
    finally:
        if model.batches == "transitions":
            batches.close()

    manifest = {
        "stage": "see",
        "vision_model": plain(vm),
        "pretrained": settings["pretrained"],
        "input_shape": input_shape,
        "latent_dim": int(model.latent_dim),
        "env_id": cfg.env.id,
        "env_name": cfg.env.name,
        "vision_domains": [d.name for d in vision_domains],
        "factor_dataset": plain(dataset_spec),
        "frames": int(len(frames)) if vision_domains else None,
        "timings": timings,
        "versions": versions(),
    }

    # 4. Diagnostics and, on ground truth, disentanglement metrics.
    t0 = time.perf_counter()
    diagnose_see_run(model, out, manifest, dataset, cfg, device)
    timings["diagnose_s"] = time.perf_counter() - t0

    write_manifest(out, manifest)
    log.info(f"done: {out}")
    return out


@hydra.main(config_path="../configs", config_name="see", version_base="1.3")
@user_facing("see")
def main(cfg: DictConfig) -> None:
    run(cfg)
