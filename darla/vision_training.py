"""The one training loop for vision models: minibatches of frames, Adam, checkpoints, resume.

Every model brings its own ``loss(batch, step)``; this loop owns the rest. It checkpoints
model, optimiser, step and sampler state to one safetensors file, so a killed run started
again with the same command continues where its last checkpoint left off, and it stops with
the step number as soon as a loss stops being finite, leaving the last good checkpoint intact.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from darla.artifacts import load_state, save_state
from darla.latent_env import frames_to_tensor


class NonFiniteLoss(FloatingPointError):
    pass


def train_vision(
    model: torch.nn.Module,
    frames,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    checkpoint: Path,
    seed: int,
    device: torch.device,
    checkpoint_every: int = 500,
    log_every: int = 100,
    log_dir: Path | None = None,
    label: str = "vision",
) -> torch.nn.Module:
    """Train ``model`` on uint8 ``frames`` (N, H, W, C numpy array) for ``steps`` minibatches."""
    model.to(device).train()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    sampler = torch.Generator().manual_seed(seed)
    step = 0
    if checkpoint.exists():
        state = load_state(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.set_state(state["sampler"])
        step = int(state["step"])
        print(f"[{label}] resuming from {checkpoint} at step {step}/{steps}")

    def save() -> None:
        save_state(checkpoint, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "sampler": sampler.get_state(), "step": step})

    writer = SummaryWriter(str(log_dir)) if log_dir else None
    bar = tqdm(total=steps, initial=step, desc=label, unit="step", mininterval=2.0)
    while step < steps:
        idx = torch.randint(len(frames), (batch_size,), generator=sampler).numpy()
        batch = frames_to_tensor(frames[idx], device)
        total, terms = model.loss(batch, step)
        if not math.isfinite(total.item()):
            bar.close()
            raise NonFiniteLoss(f"[{label}] loss became {total.item()} at step {step} ({terms}); "
                                f"stopped, the last good checkpoint {checkpoint} is kept")
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        step += 1
        bar.update(1)
        if step % log_every == 0 or step == steps:
            bar.set_postfix({k: f"{v:.4g}" for k, v in terms.items()})
            if writer:
                for k, v in terms.items():
                    writer.add_scalar(f"{label}/{k}", v, step)
        if step % checkpoint_every == 0 or step == steps:
            save()
    bar.close()
    if writer:
        writer.close()
    return model.eval()
