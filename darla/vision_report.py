"""What is written about a trained vision model: pictures of what it learned and, on ground truth, metrics.

Written by ``see`` at the end of training, and again by ``python -m darla.stage diagnose <see run>``
(darla/diagnose.py; for instance with other metric settings), into the see run's directory:

- reconstructions.png   inputs above reconstructions, one band per domain (or dataset), each row labelled
                        (input, decoder and, for β-VAE_DAE, decoder through the DAE)
- traversals.png / .gif one row per latent sweep, most informative latent (KL) first (labelled in the PNG)
- kl_per_dim.png/.pdf   KL to the prior (or code variance) of each latent (a matplotlib figure, PNG and PDF)
- latents.json          KL per latent, the traversal order and sanity flags (darla/sanity.py)
- metrics.json          disentanglement metrics, when the env has a factor dataset (and metrics.compute
                        names any)
- factor_response.png/.pdf  mean code of each latent against each factor's value (idem; PNG and PDF)
- object_reconstructions.png  inputs with their task objects outlined, reconstructions, squared error,
                        when the factor dataset has object masks; the numbers in metrics.json
                        (object_reconstruction: error inside object pixels vs background)
- metrics.json          also the task probe, when the env reports a task state (darla/probe.py):
  task_probe            how well each task quantity can be read from the latents, on held-out
                        exploration episodes and on each target domain's frames (probe_frames/)

Encoder-only models (random_cnn) get the KL plot, the metrics and the factor plot only.
The weights and their hash in manifest.json are never touched, so diagnosing a finished run
does not invalidate the stages that read it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from darla import images
from darla.artifacts import read_json, read_npz, write_json
from darla.config import plain
from darla.errors import UserError
from darla.latent_env import frames_to_tensor
from darla.probe import TaskProbe
from darla.sanity import vision_flags
from darla.trust import build_recorded
from vision_models import plots
from vision_models.diagnostics import (
    object_error_grid,
    object_reconstruction,
    reconstruction_grid,
    traversal_frames,
    traversal_grid,
)
from vision_models.metrics import encode_grid, evaluate

log = logging.getLogger("diagnose")  # Hydra prints it as [diagnose] (configs/hydra/default.yaml)

SAMPLES_PER_GROUP = 8  # images per reconstruction band
# What a model that learns by acting (batches "transitions", e.g. ICF) measured of its trained behaviour
# at the end of see (darla/see.py); copied into metrics.json under "acting" whenever the run is diagnosed.
ACTING_FILE = "acting.json"


def make_factor_dataset(spec, recorded_in: Path | None = None):
    """The factor dataset an env config names under ``factor_dataset`` (None if it has none).

    A spec read back from a run's manifest (``recorded_in``) is built only as darla/trust.py allows.
    """
    if spec is None:
        return None
    if recorded_in is None:
        return instantiate(spec)
    dataset = build_recorded(spec, object, "factor_dataset", recorded_in)
    if not all(hasattr(dataset, a) for a in ("factor_sizes", "render", "sample_factors")):
        raise UserError(
            f"{recorded_in}: factor_dataset._target_ {spec['_target_']!r} is not a factor dataset "
            f"(factor_sizes, render, sample_factors)"
        )
    return dataset


def representation_function(model, device: torch.device, batch_size: int):
    """uint8 images (N, H, W, C) -> (mean, logvar or None) numpy arrays, encoded in batches."""

    @torch.no_grad()
    def represent(frames: np.ndarray):
        means, logvars = [], []
        for first in range(0, len(frames), batch_size):
            mean, logvar = model.encode(frames_to_tensor(frames[first : first + batch_size], device))
            means.append(mean.float().cpu().numpy())
            if logvar is not None:
                logvars.append(logvar.float().cpu().numpy())
        return np.concatenate(means), (np.concatenate(logvars) if logvars else None)

    return represent


def diagnose(
    model,
    out: Path,
    groups: dict[str, np.ndarray],
    dataset,
    metrics_cfg,
    device: torch.device,
    seed: int,
    probe: TaskProbe | None = None,
    extra: dict | None = None,
) -> dict:
    """Write every diagnostic of ``model`` into ``out``; ``groups`` maps a band name to uint8 frames.

    Returns what metrics.json holds: the disentanglement metrics (with a factor dataset) and the
    task probe (with ``probe``), and ``extra`` (sections measured elsewhere: what a model that acts measured);
    empty without any.
    """
    model = model.to(device).eval()
    rng = np.random.default_rng(seed)
    pool = np.concatenate(list(groups.values()))
    sample = frames_to_tensor(pool[rng.choice(len(pool), size=min(512, len(pool)), replace=False)], device)
    with torch.no_grad():
        kl = model.kl_per_dim(sample).cpu().numpy()
    order = np.argsort(-kl).tolist()
    plots.save_figure(
        plots.bar_plot(
            kl, labels=[f"z{i}" for i in range(len(kl))], title="KL to the prior per latent (batch mean)", ylabel="nats"
        ),
        out / "kl_per_dim.png",
    )
    if model.can_decode:
        bands, labels = [], []
        for name, frames in groups.items():
            pick = rng.choice(len(frames), size=min(SAMPLES_PER_GROUP, len(frames)), replace=False)
            grid, rows = reconstruction_grid(model, frames_to_tensor(frames[pick], device))
            bands.append(grid)
            labels += [f"{name}\n{rows[0]}", *rows[1:]]  # each band's first row names its domain
        images.save_png(out / "reconstructions.png", np.concatenate(bands, axis=0), labels=labels)
        # Traversals start from the busiest image of the sample (most pixel variance), so the sweep
        # shows objects rather than a close-up of a wall.
        busiest = sample[torch.argsort(sample.flatten(1).std(1), descending=True)]
        grid, order = traversal_grid(model, busiest)
        images.save_png(out / "traversals.png", grid, labels=[f"z{d}\nKL {kl[d]:.3g}" for d in order])
        rows, _ = traversal_frames(model, busiest, steps=17)
        images.save_traversal_gif(out / "traversals.gif", rows)
    with torch.no_grad():
        stochastic = model.encode(sample[:2])[1] is not None
        input_std = float(sample.std(0).mean())
        reconstruction_std = float(model.reconstruct(sample).std(0).mean()) if model.can_decode else None
    flags = vision_flags(kl, stochastic, input_std, reconstruction_std)
    for flag, why in flags.items():
        log.warning(f"warning: {flag}: {why}")
    write_json(
        out / "latents.json",
        {
            "kl_per_dim": kl.tolist(),
            "traversal_order": order,
            "input_std": input_std,
            "reconstruction_std": reconstruction_std,
            "flags": flags,
        },
    )

    report: dict = {}
    if dataset is not None and metrics_cfg is not None and metrics_cfg.get("compute"):
        codes = encode_grid(
            dataset,
            representation_function(model, device, metrics_cfg.encode_batch_size),
            batch_size=metrics_cfg.encode_batch_size,
        )
        log.info(f"encoded {len(codes.mean):,} grid points in {codes.encode_seconds:.1f}s")
        settings = plain(metrics_cfg.compute)
        results = evaluate(codes, settings, metrics_cfg.seed)
        for name, scores in results.items():
            log.info(
                f"{name}: "
                + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in scores.items())
            )
        report.update(
            {
                "factor_names": list(codes.factor_names),
                "factor_sizes": list(codes.factor_sizes),
                "encode_seconds": codes.encode_seconds,
                "metrics": results,
                # each metric's headline scores -> column titles, for leaderboards (configs/metric/)
                "headline": {name: dict(spec.get("headline") or {}) for name, spec in settings.items()},
            }
        )
        plots.save_figure(plots.factor_response_plot(codes, latent_order=order), out / "factor_response.png")
    if model.can_decode and hasattr(dataset, "object_masks"):
        images_, masks = object_frames(dataset, seed)
        images_, masks = frames_to_tensor(images_, device), torch.from_numpy(masks)
        report["object_reconstruction"] = object_reconstruction(model, images_, masks)
        grid, labels = object_error_grid(model, images_[:8], masks[:8])
        images.save_png(out / "object_reconstructions.png", grid, labels=labels)
        log.info(
            "object reconstruction: " + ", ".join(f"{k} {v:.4g}" for k, v in report["object_reconstruction"].items())
        )
    if probe is not None:
        represent = representation_function(model, device, 512)
        report["task_probe"] = probe.scores(lambda frames: represent(frames)[0])
    report.update(extra or {})
    if report:
        write_json(out / "metrics.json", {"metrics": {}, **report})
    return report


def object_frames(dataset, seed: int, count: int = 256, min_fraction: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """``count`` renders of the factor dataset in which task objects cover at least ``min_fraction`` of
    the frame (outside held-out pairings), with their object masks."""
    rng = np.random.default_rng(seed)
    factors = dataset.sample_factors(4 * count, rng)
    if hasattr(dataset, "allowed"):
        factors = factors[dataset.allowed(factors)]
    masks = dataset.object_masks(factors)
    keep = np.flatnonzero(masks.mean(axis=(1, 2)) >= min_fraction)[:count]
    return dataset.render(factors[keep]), masks[keep]


def diagnose_see_run(model, see_dir: Path, manifest: dict, dataset, cfg, device: torch.device) -> dict:
    """Everything :func:`diagnose` writes for a see run: its images by domain, its metrics settings
    and its task probe (darla/probe.py), as see does at its end and the diagnose stage again."""
    groups = image_groups(see_dir, manifest, dataset, cfg.seed)
    probe = TaskProbe.of_see_run(see_dir, manifest, cfg)
    extra = {"acting": read_json(see_dir / ACTING_FILE)} if (see_dir / ACTING_FILE).exists() else None
    return diagnose(model, see_dir, groups, dataset, cfg.metrics, device, cfg.seed, probe, extra)


def image_groups(see_dir: Path, manifest: dict, dataset, seed: int, per_group: int = 512) -> dict[str, np.ndarray]:
    """The images a see run was trained on, by domain: its frames, or fresh renders of its dataset."""
    frames_path = see_dir / "frames.npz"
    if frames_path.exists():
        data = read_npz(frames_path, "frames", "domain")
        frames, domain = data["frames"], data["domain"]
        return {name: frames[domain == i] for i, name in enumerate(manifest["vision_domains"]) if (domain == i).any()}
    rng = np.random.default_rng(seed)
    return {manifest["env_name"]: dataset.render(dataset.sample_factors(per_group, rng))}
