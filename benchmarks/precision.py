"""bfloat16 autocast against float32 for vision training: what it buys and what it changes.

    python benchmarks/precision.py --frames runs/<run>/see/frames.npz   # a see run's exploration frames
    python benchmarks/precision.py                                      # collects --collect frames first
    python benchmarks/precision.py --quick                              # tiny sizes, a smoke test

For each model (`--models`, DARLA's DAE and β-VAE_DAE by default) it trains three times with
`darla.vision_training.train_vision`, as the see stage does (`see.precision`): float32 with seed s,
bfloat16 with seed s (same initial weights and batches), and float32 with seed s + 1. It reports
steps/s after a warm-up, and the model's loss terms in float32 on held-out frames (the last
`--eval` frames, never trained on; the models' own noise fixed). bf16 changes the results beyond
noise when its loss differs from float32's by more than another seed's does; the script says so.
The β-VAE_DAE reads a DAE trained once in float32 for `--steps` steps (the same for all three).
Other load on the machine skews the speed figures; the header prints the load average.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from throughput import StepClock, compose  # noqa: E402

from darla.artifacts import read_npz  # noqa: E402
from darla.config import domains, resolve_device  # noqa: E402
from darla.latent_env import frames_to_tensor  # noqa: E402
from darla.see import build_model, pretrained_parts  # noqa: E402
from darla.vec_env import collect_frames  # noqa: E402
from darla.vision_training import FrameBatches, train_vision  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=Path, help="an .npz with 'frames' (N, H, W, C) uint8, e.g. a see run's")
    parser.add_argument("--collect", type=int, default=4000, help="frames to collect when --frames is not given")
    parser.add_argument("--models", nargs="+", default=["dae", "beta_vae_dae"])
    parser.add_argument("--steps", type=int, default=400, help="training steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of the timing")
    parser.add_argument("--eval", type=int, default=512, help="held-out frames the losses are measured on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, figures not meaningful")
    return parser.parse_args()


def train(model, frames, cfg, steps: int, seed: int, precision: str, device, warmup: int) -> float:
    """Train in place; steps/s after the warm-up."""
    clock = StepClock(model)
    with tempfile.TemporaryDirectory() as tmp:  # train_vision always writes a checkpoint
        train_vision(
            model,
            FrameBatches(frames),
            steps=steps,
            batch_size=cfg.train.batch_size,
            lr=cfg.train.lr,
            checkpoint=Path(tmp) / "model.safetensors",
            seed=seed,
            device=device,
            checkpoint_every=steps,
            log_every=steps,
            precision=precision,
        )
    del model.loss  # the clock's stand-in; the class's method again
    return clock.steps_per_second(warmup)


@torch.no_grad()
def held_out_loss(model, images: torch.Tensor, step: int) -> dict[str, float]:
    """The loss terms in float32 on held-out frames, with the model's own noise (masks, samples) fixed."""
    torch.manual_seed(12345)
    total, terms = model.train().loss(images, step)
    return {**terms, "total": float(total)}


def main(args: argparse.Namespace) -> None:
    cfg = compose("see", [f"seed={args.seed}", f"device={args.device}"])
    device = resolve_device(cfg.device)
    if args.frames:
        frames = read_npz(args.frames, "frames")["frames"]
    else:
        print(f"collecting {args.collect} frames from the vision domains ...", flush=True)
        frames = collect_frames(domains(cfg, "vision"), args.collect, cfg.num_envs, cfg.vec_env, cfg.seed)["frames"]
    train_frames, eval_images = frames[: -args.eval], frames_to_tensor(frames[-args.eval :], device)
    cpuinfo = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    bf16_flags = sorted({flag for flag in cpuinfo if flag in ("amx_bf16", "amx_tile", "avx512_bf16")}) or ["none"]
    print(
        f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} threads, "
        f"CPU {torch.backends.cpu.get_cpu_capability()} with bf16 flags {', '.join(bf16_flags)}, "
        f"load average {os.getloadavg()[0]:.2f}; {len(train_frames)} training frames, {args.eval} held out, "
        f"{args.steps} steps per run"
    )
    results = []
    for name in args.models:
        mcfg = compose("see", [f"seed={args.seed}", f"vision_model={name}"])
        parts = {}
        for part in pretrained_parts(mcfg.vision_model):  # trained once, in float32, shared by the three runs
            torch.manual_seed(args.seed)
            parts[part] = instantiate(mcfg[part].model)
            train(parts[part], train_frames, mcfg[part], args.steps, args.seed, "fp32", device, args.warmup)
        for precision, seed in (("fp32", args.seed), ("bf16", args.seed), ("fp32", args.seed + 1)):
            torch.manual_seed(seed + 1)  # as the see stage seeds the vision model
            model = build_model(mcfg.vision_model, **copy.deepcopy(parts)).to(device)
            speed = train(model, train_frames, mcfg.vision_model, args.steps, seed, precision, device, args.warmup)
            loss = held_out_loss(model, eval_images, args.steps)
            results.append({"model": name, "precision": precision, "seed": seed, "steps_per_s": speed, "loss": loss})
            terms = ", ".join(f"{k} {v:.4g}" for k, v in loss.items())
            print(f"{name:14s} {precision} seed {seed}: {speed:6.2f} steps/s; held-out {terms}", flush=True)
        fp32, bf16, other = results[-3:]
        speedup = bf16["steps_per_s"] / fp32["steps_per_s"]
        change = abs(bf16["loss"]["total"] - fp32["loss"]["total"])
        noise = abs(other["loss"]["total"] - fp32["loss"]["total"])
        verdict = "within" if change <= noise else "BEYOND"
        print(
            f"{name}: bf16 {speedup:.2f}x the steps/s of fp32; held-out total loss changes by {change:.4g} "
            f"(another seed: {noise:.4g}): {verdict} seed noise"
        )
        results.append({"model": name, "speedup": speedup, "loss_change": change, "seed_noise": noise})
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    args = parse_args()
    if args.quick:
        args.collect, args.steps, args.warmup, args.eval = 300, 12, 2, 32
    main(args)
