"""The one training loop for vision models: minibatches of frames, Adam, checkpoints, resume.

Every model brings its own ``loss(batch, step)`` (or ``training_step``); this loop owns the rest. It checkpoints
model, optimisers, step, the batch sampler and torch's, numpy's and Python's random generators to
one safetensors file, so a killed run started again with the same command continues where its
last checkpoint left off and ends with the same weights as one never interrupted, and it stops with
the step number as soon as a loss stops being finite, leaving the last good checkpoint intact.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from darla.artifacts import load_state, rng_state, save_state, set_rng_state
from darla.latent_env import frames_to_tensor
from envs.factor_dataset import sample_training_factors, sweep_factors

PRECISIONS = ("fp32", "bf16")


class NonFiniteLoss(FloatingPointError):
    pass


class FrameBatches:
    """Minibatches drawn at random from stored uint8 frames (N, H, W, C): exploration data."""

    def __init__(self, frames: np.ndarray):
        self.frames = frames

    def __call__(self, batch_size: int, generator: torch.Generator, device) -> torch.Tensor:
        idx = torch.randint(len(self.frames), (batch_size,), generator=generator).numpy()
        return frames_to_tensor(self.frames[idx], device)


class FactorBatches:
    """Minibatches rendered on demand from a factor dataset (envs/factor_dataset.py).

    kind="images": factor vectors drawn uniformly from the whole grid, so training sees all of it
    (dSprites' 737,280 images) without storing it. kind="factor_sweeps": one factor, chosen
    uniformly, varies across the batch while the others stay fixed; yields (images, factor).
    Grid points the dataset does not allow for training (a held-out pairing) are never drawn.
    """

    def __init__(self, dataset, kind: str = "images"):
        if kind not in ("images", "factor_sweeps"):
            raise ValueError(f"unknown batch kind {kind!r}; expected 'images' or 'factor_sweeps'")
        self.dataset, self.kind = dataset, kind

    def __call__(self, batch_size: int, generator: torch.Generator, device):
        # All randomness comes from the checkpointed torch generator, so a resumed run draws the
        # same batches it would have drawn without the interruption.
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
        if self.kind == "images":
            return frames_to_tensor(self.dataset.render(sample_training_factors(self.dataset, batch_size, rng)), device)
        factor = int(rng.integers(len(self.dataset.factor_sizes)))
        images = self.dataset.render(sweep_factors(self.dataset, batch_size, factor, rng))
        return frames_to_tensor(images, device), factor


class TransitionBatches:
    """Minibatches of transitions {obs, action, next_obs, mu} that the model's own behaviour collects.

    For models that learn by acting (`batches = "transitions"`, e.g. ICF). Owns a vector env
    (``venv``, uint8 frames). Before each minibatch it steps every worker ``steps_per_batch`` times
    with ``model.behaviour`` (``epsilon``-uniform exploration; mu is the probability of the action
    taken). Transitions go into a replay of the ``replay_size`` most recent, from which the minibatch
    is drawn uniformly; the first call fills it to at least one minibatch. The replay is not
    checkpointed: a resumed run starts with a fresh collector (same weights and step, new experience).
    `report` measures the trained behaviour on ``report_transitions`` fresh ones.
    """

    def __init__(
        self,
        venv,
        model,
        *,
        replay_size: int = 5000,
        steps_per_batch: int = 1,
        epsilon: float = 0.2,
        report_transitions: int = 512,
    ):
        self.venv, self.model = venv, model
        self.replay_size, self.steps_per_batch, self.epsilon = int(replay_size), int(steps_per_batch), float(epsilon)
        self.report_transitions = int(report_transitions)
        self.obs = None
        self.size = self.cursor = 0

    def _store(self, obs, actions, next_obs, mu) -> None:
        if self.size == 0 and self.cursor == 0:
            shape = obs.shape[1:]
            self.replay = {
                "obs": np.zeros((self.replay_size, *shape), np.uint8),
                "next_obs": np.zeros((self.replay_size, *shape), np.uint8),
                "action": np.zeros(self.replay_size, np.int64),
                "mu": np.zeros(self.replay_size, np.float32),
            }
        for i in range(len(obs)):
            for key, value in (("obs", obs[i]), ("next_obs", next_obs[i]), ("action", actions[i]), ("mu", mu[i])):
                self.replay[key][self.cursor] = value
            self.cursor = (self.cursor + 1) % self.replay_size
            self.size = min(self.size + 1, self.replay_size)

    def collect(self, steps: int, generator: torch.Generator, device) -> None:
        if self.obs is None:
            self.obs = self.venv.reset()
        for _ in range(steps):
            actions, mu = self.model.behaviour(frames_to_tensor(self.obs, device), self.epsilon, generator)
            actions = actions.cpu().numpy()
            next_obs, _, dones, infos = self.venv.step(actions)
            # A finished episode's env was reset: its real next frame is the terminal observation.
            landed = np.stack([infos[i]["terminal_observation"] if d else next_obs[i] for i, d in enumerate(dones)])
            self._store(self.obs, actions, landed, mu.cpu().numpy())
            self.obs = next_obs

    def __call__(self, batch_size: int, generator: torch.Generator, device) -> dict[str, torch.Tensor]:
        n = self.venv.num_envs
        need = max(self.steps_per_batch, -(-(batch_size - self.size) // n))
        self.collect(need, generator, device)
        return self.tensors(torch.randint(self.size, (batch_size,), generator=generator).numpy(), device)

    def tensors(self, idx: np.ndarray, device) -> dict[str, torch.Tensor]:
        """The stored transitions at ``idx``, as the model's loss takes them."""
        return {
            "obs": frames_to_tensor(self.replay["obs"][idx], device),
            "next_obs": frames_to_tensor(self.replay["next_obs"][idx], device),
            "action": torch.from_numpy(self.replay["action"][idx]).to(device),
            "mu": torch.from_numpy(self.replay["mu"][idx]).to(device),
        }

    @torch.no_grad()
    def report(self, generator: torch.Generator, device) -> dict:
        """``model.acting_report`` on ``report_transitions`` fresh transitions of the trained behaviour."""
        n = self.report_transitions
        fresh = TransitionBatches(self.venv, self.model.eval(), replay_size=n, epsilon=self.epsilon)
        fresh.obs = self.obs
        fresh.collect(-(-n // self.venv.num_envs), generator, device)
        return {**self.model.acting_report(fresh.tensors(np.arange(fresh.size), device)), "transitions": n}

    def close(self) -> None:
        self.venv.close()


def train_vision(
    model: torch.nn.Module,
    batches,
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
    precision: str = "fp32",
) -> torch.nn.Module:
    """Train ``model`` for ``steps`` minibatches drawn by ``batches`` (FrameBatches or FactorBatches).

    The model's ``configure_optimizers`` and ``training_step`` do the update (VisionModel's
    defaults: one Adam over ``loss``); this loop owns sampling, logging, checkpoints and resume.
    ``precision="bf16"`` runs each training step under bfloat16 autocast (weights and optimiser
    state stay float32): faster on CPUs with AMX and on GPUs with bf16 (benchmarks/precision.py).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision is {precision!r}; expected one of {', '.join(PRECISIONS)}")
    model.to(device).train()
    optimizers = model.configure_optimizers(lr)
    sampler = torch.Generator().manual_seed(seed)
    step = 0
    if checkpoint.exists():
        state = load_state(checkpoint)
        model.load_state_dict(state["model"])
        for name, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        sampler.set_state(state["sampler"])
        set_rng_state(state["rng"])  # the models' own noise (reparameterisation, masks, permutations)
        step = int(state["step"])
        logging.getLogger(label).info(f"resuming from {checkpoint} at step {step}/{steps}")  # [dae] / [vision_model]

    def save() -> None:
        save_state(
            checkpoint,
            {
                "model": model.state_dict(),
                "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
                "sampler": sampler.get_state(),
                "rng": rng_state(),
                "step": step,
            },
        )

    writer = SummaryWriter(str(log_dir)) if log_dir else None
    bar = tqdm(total=steps, initial=step, desc=label, unit="step", mininterval=2.0)
    while step < steps:
        batch = batches(batch_size, sampler, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            terms = model.training_step(batch, step, optimizers)
        bad = {k: v for k, v in terms.items() if not math.isfinite(v)}
        if bad:
            bar.close()
            kept = (
                f"the last good checkpoint {checkpoint} is kept"
                if checkpoint.exists()
                else "no checkpoint had been written yet"
            )
            raise NonFiniteLoss(
                f"[{label}] loss became {bad.get('total', next(iter(bad.values())))} at step {step} "
                f"({terms}); stopped, {kept}"
            )
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
