"""Pictures of what a vision model learned, as uint8 RGB arrays (H, W, 3) ready to save.

- reconstruction_grid: inputs above their reconstructions (with the rows' labels).
- traversal_grid: one row per latent (most informative first, by KL to the prior), each row
  decoding the code of a seed image with that one latent swept over a range.
- object_reconstruction / object_error_grid: reconstruction error inside the task objects' pixels
  against the rest of the frame, from ground-truth masks, as numbers and as a picture.

Models trained through a frozen DAE (β-VAE_DAE) are only asked to match J(x̂) to J(x), so their
decoder output x̂ may look nothing like x wherever the DAE does not look; their pictures also
show x̂ as the DAE sees it (its reconstruction of x̂), which is what the loss shaped.
"""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> (N, H, W, 3) uint8."""
    x = x.detach().clamp(0, 1).mul(255).round().byte().cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).numpy()


def tile(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Tile rows of images (each (N, H, W, 3)) into one picture with a white grid."""
    n, h, w = rows[0].shape[:3]
    out = np.full((len(rows) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            out[y : y + h, x : x + w] = img
    return out


def through_dae(model, pixels: torch.Tensor) -> torch.Tensor:
    """Pixels as a model's frozen DAE J sees them (its reconstruction of them); unchanged without a DAE."""
    dae = getattr(model, "dae", None)
    return dae.reconstruct(pixels) if dae is not None else pixels


@torch.no_grad()
def reconstruction_grid(model, images: torch.Tensor) -> tuple[np.ndarray, list[str]]:
    """Rows: inputs, reconstructions and, for models with a DAE, those as the DAE sees them.

    Returns the grid and its row labels ("input", "decoder", "decoder through\nthe DAE")."""
    model.eval()
    rows, labels = [images, model.reconstruct(images)], ["input", "decoder"]
    if getattr(model, "dae", None) is not None:
        rows.append(through_dae(model, rows[1]))
        labels.append("decoder through\nthe DAE")
    return tile([to_uint8(r) for r in rows]), labels


@torch.no_grad()
def traversal_frames(
    model, images: torch.Tensor, span: float | None = None, steps: int = 9, max_dims: int | None = 10
) -> tuple[list[np.ndarray], list[int]]:
    """Decoded traversals: a list (one per latent, sorted by KL) of (steps, H, W, 3) frames.

    The sweep is centred on the mean code of ``images[0]`` and spans ±span, by default the
    model's ``traversal_span``: 2.5 prior standard deviations for Gaussian latents with a unit
    prior, 1 for InfoGAN's Uniform(-1, 1) codes. Models with a DAE are shown through it (see the
    module docstring).
    """
    model.eval()
    span = getattr(model, "traversal_span", 2.5) if span is None else span
    order = torch.argsort(model.kl_per_dim(images), descending=True).tolist()[:max_dims]
    base, _ = model.encode(images[:1])
    values = torch.linspace(-span, span, steps, device=base.device)
    rows = []
    for d in order:
        codes = base.repeat(steps, 1)
        codes[:, d] = values
        rows.append(to_uint8(through_dae(model, torch.sigmoid(model.decode(codes)))))
    return rows, order


def traversal_grid(model, images: torch.Tensor, **kwargs) -> tuple[np.ndarray, list[int]]:
    """The traversals of :func:`traversal_frames` tiled, one row per latent; returns the grid and the
    latents in row order."""
    rows, order = traversal_frames(model, images, **kwargs)
    return tile(rows), order


@torch.no_grad()
def object_reconstruction(model, images: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Does a reconstruction keep the task's objects? Mean squared pixel error inside the object
    pixels (``masks``, bool (N, H, W)) and outside them, and their ratio (> 1: objects are drawn worse
    than the room around them). For models with a DAE, also as the DAE sees both images (its loss),
    and the DAE's own reconstruction of the input against the input (``dae_itself_``): what the DAE
    loses, the loss through it cannot ask the model to keep."""
    model.eval()
    masks = masks.to(images.device)

    def errors(truth: torch.Tensor, drawn: torch.Tensor, prefix: str) -> dict[str, float]:
        error = (drawn - truth).pow(2).mean(1)  # per pixel, over channels
        inside, outside = float(error[masks].mean()), float(error[~masks].mean())
        return {
            f"{prefix}object_mse": inside,
            f"{prefix}background_mse": outside,
            f"{prefix}object_to_background": inside / outside if outside > 0 else float("inf"),
        }

    reconstruction = model.reconstruct(images)
    result = {
        "frames": len(images),
        "object_fraction": float(masks.float().mean()),
        **errors(images, reconstruction, ""),
    }
    if getattr(model, "dae", None) is not None:
        seen = through_dae(model, images)
        result.update(errors(seen, through_dae(model, reconstruction), "dae_view_"))
        result.update(errors(images, seen, "dae_itself_"))  # what J keeps of the input: the loss sees no more
    return result


@torch.no_grad()
def object_error_grid(model, images: torch.Tensor, masks: torch.Tensor) -> tuple[np.ndarray, list[str]]:
    """Rows: inputs with the objects outlined, reconstructions, and the squared error (white = 1/4
    or more) with the same outlines: where a model loses objects, the outlines enclose bright error.
    Models with a DAE get the same three rows again as the DAE sees both images (what their loss
    measures). Returns the grid and its row labels."""
    model.eval()
    reconstruction = model.reconstruct(images)
    edge = masks.to(images.device).float().unsqueeze(1)
    edge = (torch.nn.functional.max_pool2d(edge, 3, 1, 1) - edge).bool().expand(-1, 3, -1, -1)  # outer rim
    outline = torch.tensor([1.0, 1.0, 0.0], device=images.device).view(1, 3, 1, 1).expand_as(images)

    def rows(truth: torch.Tensor, drawn: torch.Tensor) -> list[torch.Tensor]:
        error = (drawn - truth).pow(2).mean(1, keepdim=True).mul(4).clamp(0, 1).expand(-1, 3, -1, -1)
        return [torch.where(edge, outline, x) for x in (truth, drawn, error)]

    shown, labels = rows(images, reconstruction), ["input", "reconstruction", "error"]
    if getattr(model, "dae", None) is not None:
        shown += rows(through_dae(model, images), through_dae(model, reconstruction))
        labels += ["input (DAE)", "recon. (DAE)", "error (DAE)"]
    return tile([to_uint8(r) for r in shown]), labels
