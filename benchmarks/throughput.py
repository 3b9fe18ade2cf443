"""Throughput of the DARLA pipeline on this machine, every figure measured in one run.

    python benchmarks/throughput.py            # full sizes, a few minutes on 2 CPU cores
    python benchmarks/throughput.py --quick    # tiny sizes, a smoke test: the figures mean little
    python benchmarks/throughput.py --num-envs 2 --device cpu env.kwargs.room_size=6   # Hydra overrides

1. see, collection: frames/s of `darla.vec_env.collect_frames` over the experiment's vision domains
   (random policy, `num_envs` vector-env workers), start-up of the workers included.
2. see, vision training: steps/s and images/s of `darla.vision_training.train_vision` for dae,
   beta_vae and beta_vae_dae (whose loss also runs the frozen DAE), on random uint8 frames.
3. act vs the raw environment, all on ONE vector env over the source domains:
   a. raw env, random actions;  b. the same behind LatentObservation (a beta_vae_dae encoder);
   c. PPO MlpPolicy learning on the encoded env (the act stage);  d. PPO CnnPolicy on pixels.
   The project's goal is c >= 0.7 x a; the script says whether this run met it.

Torch threads are set as the pipeline sets them: the default for vision training (see), the
config's policy_threads for the act measurements, 1 in each vector-env worker (make_vec_env caps
them); --torch-threads N overrides this process's, to see what it would buy. The act
measurements alternate in rounds and report medians, since a shared VM's speed drifts. Other load
on the machine skews every figure (oversubscribed torch threads most of all), so the header
prints the load average seen at the start.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# train_vision draws a tqdm bar; here it would only interleave with the table. Must be set
# before tqdm is imported (it reads its TQDM_* defaults at import time).
os.environ.setdefault("TQDM_DISABLE", "1")

import hydra  # noqa: E402
import numpy as np  # noqa: E402
import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv  # noqa: E402

from darla.config import domains, resolve_device  # noqa: E402
from darla.latent_env import LatentObservation  # noqa: E402
from darla.policy_inputs import PolicyInput  # noqa: E402
from darla.runs import build_agent  # noqa: E402
from darla.see import build_model, pretrained_parts  # noqa: E402
from darla.vec_env import (
    collect_frames,  # noqa: E402
    make_vec_env,  # noqa: E402
)
from darla.vision_training import FrameBatches, train_vision  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
VISION_MODELS = ("dae", "beta_vae", "beta_vae_dae")
ENCODER = "beta_vae_dae"  # DARLA's model: the encoder the act stage runs by default
ACT_GOAL = 0.7  # act must run at >= 70% of the raw env's steps/s


@dataclass(frozen=True)
class Sizes:
    collect_frames: int  # frames collect_frames gathers
    train_frames: int  # random frames the vision models sample minibatches from
    train_steps: int  # train_vision steps per model, warm-up included
    train_warmup: int  # first steps left out of the timing (allocator, Adam state, first-call costs)
    env_steps: int  # env steps timed for raw and encoded envs (all workers together)
    env_warmup: int  # vector steps taken before those timings
    act_steps: int  # PPO timesteps per round; SB3 rounds up to whole rollouts (n_steps x num_envs)
    rounds: int  # alternating rounds of the four act measurements


FULL = Sizes(
    collect_frames=5000,
    train_frames=2000,
    train_steps=210,
    train_warmup=10,
    env_steps=6000,
    env_warmup=20,
    act_steps=10_000,
    rounds=3,
)
QUICK = Sizes(
    collect_frames=200,
    train_frames=256,
    train_steps=15,
    train_warmup=5,
    env_steps=400,
    env_warmup=5,
    act_steps=1,
    rounds=1,
)  # act: one rollout


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, figures not meaningful")
    parser.add_argument("--num-envs", type=int, default=None, help="vector-env workers (default: config num_envs)")
    parser.add_argument("--device", default=None, help="torch device: cpu, cuda, auto (default: config device)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch threads in this process (default: torch's own, as the pipeline runs)",
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every composed config")
    return parser.parse_args()


def compose(stage: str, overrides: list[str]) -> DictConfig:
    """The config a stage would run with (configs/<stage>.yaml plus overrides), via Hydra's compose API."""
    with hydra.initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return hydra.compose(stage, overrides=overrides)


# -- 1. collection ---------------------------------------------------------------------------


def collection_speed(cfg: DictConfig, frames: int) -> float:
    """Frames/s of collect_frames, end to end: worker start-up and env construction are part of its cost."""
    vision_domains = domains(cfg, "vision")
    start = time.perf_counter()
    data = collect_frames(vision_domains, frames, cfg.num_envs, cfg.vec_env, cfg.seed)
    return len(data["frames"]) / (time.perf_counter() - start)


# -- 2. vision training ----------------------------------------------------------------------


class StepClock:
    """Stands in for ``model.loss`` and stamps the time each call starts.

    train_vision calls the loss exactly once per step, so stamps k and k+n are n whole steps
    apart (minibatch sampling, forward, backward, Adam): the warm-up before stamp k and the
    final checkpoint write after the last stamp stay out of the timing. Each step ends with
    ``loss.item()``, which waits for the device, so the stamps are honest on CUDA too.
    """

    def __init__(self, model: torch.nn.Module):
        self.loss = model.loss
        self.stamps: list[float] = []
        model.loss = self  # an instance attribute shadows the class's method

    def __call__(self, batch: torch.Tensor, step: int):
        self.stamps.append(time.perf_counter())
        return self.loss(batch, step)

    def steps_per_second(self, warmup: int) -> float:
        timed = self.stamps[warmup:]
        return (len(timed) - 1) / (timed[-1] - timed[0])


def build_vision_model(cfg: DictConfig) -> torch.nn.Module:
    """The vision model as the see stage builds it, with untrained (but frozen) parts where it has some (a DAE)."""
    return build_model(
        cfg.vision_model, **{name: instantiate(cfg[name].model) for name in pretrained_parts(cfg.vision_model)}
    )


def training_speed(cfg: DictConfig, frames: np.ndarray, sizes: Sizes, device: torch.device) -> float:
    """train_vision steps/s for cfg.vision_model, with its configured batch size and learning rate."""
    model = build_vision_model(cfg)
    clock = StepClock(model)
    train = cfg.vision_model.train
    with tempfile.TemporaryDirectory() as tmp:  # train_vision always writes a checkpoint
        train_vision(
            model,
            FrameBatches(frames),
            steps=sizes.train_steps,
            batch_size=train.batch_size,
            lr=train.lr,
            checkpoint=Path(tmp) / "vision.safetensors",
            seed=cfg.seed,
            device=device,
            checkpoint_every=sizes.train_steps,
            log_every=sizes.train_steps,
            label=cfg.vision_model.name,
        )
    return clock.steps_per_second(sizes.train_warmup)


# -- 3. act vs the raw environment -----------------------------------------------------------


def build_every_domain(venv: VecEnv, names: list[str]) -> None:
    """Make every worker build every source domain's env now, outside the timed loops.

    DomainMixture builds a domain's env the first time it plays it, which would otherwise land
    inside whichever measurement happens to run first and flatter the ones after it.
    """
    for name in names:
        venv.set_options({"domain": name})
        venv.reset()
    venv.set_options({"domain": None})  # back to a random domain per episode, as in training
    venv.reset()


def random_steps_speed(venv: VecEnv, env_steps: int, warmup: int, seed: int) -> float:
    """Env steps/s (all workers together) under a uniformly random policy."""
    n = venv.num_envs
    venv.action_space.seed(seed)
    random_actions = lambda: np.stack([venv.action_space.sample() for _ in range(n)])  # noqa: E731
    venv.reset()
    for _ in range(warmup):  # first encoder calls and first steps after reset
        venv.step(random_actions())
    vec_steps = max(1, env_steps // n)
    start = time.perf_counter()
    for _ in range(vec_steps):
        venv.step(random_actions())
    return vec_steps * n / (time.perf_counter() - start)


def learning_speed(agent, steps: int) -> float:
    """Env steps/s of SB3 learning (rollouts and updates), continuing the agent's earlier learning."""
    agent._last_obs = None  # the env was stepped by other measurements since: start from a fresh reset
    before = agent.num_timesteps
    start = time.perf_counter()
    agent.learn(steps, reset_num_timesteps=False)  # no evaluation callback: evaluation is not throughput
    return (agent.num_timesteps - before) / (time.perf_counter() - start)


# -- report ----------------------------------------------------------------------------------


def print_header(cfg: DictConfig, sizes: Sizes, device: torch.device, quick: bool) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("darla throughput benchmark" + (" (--quick: tiny sizes, figures not meaningful)" if quick else ""))
    print(
        f"machine  {platform.machine()}, {cores} cores usable, load average {load:.2f} at start; "
        f"python {platform.python_version()}"
    )
    print(
        f"torch    {torch.__version__}, {torch.get_num_threads()} threads in this process (1 per env worker); "
        f"device {device}; stable-baselines3 {stable_baselines3.__version__}"
    )
    print(f"config   env {cfg.env.name}, {cfg.num_envs} envs ({cfg.vec_env}), agent {cfg.agent.name}, seed {cfg.seed}")
    print(
        f"sizes    collect {sizes.collect_frames} frames; train {sizes.train_steps} steps "
        f"({sizes.train_warmup} untimed) on {sizes.train_frames} random frames; env {sizes.env_steps} steps; "
        f"act >= {sizes.act_steps} steps"
    )
    if load > 0.5 * cores:
        print(f"WARNING  load average {load:.2f} on {cores} cores: something else is running, the figures are skewed")
    print()


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    head = ("measurement", "rate", "unit", "note")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = lambda r: "  ".join([r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].ljust(widths[2]), r[3]])  # noqa: E731
    print(line(head))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))


def main() -> None:
    args = parse_args()
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    sizes = QUICK if args.quick else FULL
    overrides = list(args.overrides) + [f"seed={args.seed}"]
    if args.num_envs is not None:
        overrides.append(f"num_envs={args.num_envs}")
    if args.device is not None:
        overrides.append(f"device={args.device}")
    see_cfg = compose("see", overrides)
    device = resolve_device(see_cfg.device)
    torch.manual_seed(args.seed)
    print_header(see_cfg, sizes, device, args.quick)
    rows: list[tuple[str, str, str, str]] = []

    # 1. Collection over the vision domains.
    n_vision = len(see_cfg.env.vision)
    print(f"[1/3] collecting {sizes.collect_frames} frames from {n_vision} vision domains ...", flush=True)
    fps = collection_speed(see_cfg, sizes.collect_frames)
    rows.append(
        (
            f"see: collect_frames ({n_vision} vision domains)",
            f"{fps:,.0f}",
            "frames/s",
            f"{sizes.collect_frames} frames, worker start-up included",
        )
    )

    # 2. Vision training on random frames (the loss costs the same whatever the pixels are).
    c, h, w = see_cfg.vision_model.model.input_shape
    frames = np.random.default_rng(args.seed).integers(0, 256, size=(sizes.train_frames, h, w, c), dtype=np.uint8)
    for name in VISION_MODELS:
        cfg = compose("see", overrides + [f"vision_model={name}"])
        batch = cfg.vision_model.train.batch_size
        print(f"[2/3] training {name} for {sizes.train_steps} steps of batch {batch} ...", flush=True)
        sps = training_speed(cfg, frames, sizes, device)
        note = f"{sps:.2f} steps/s, batch {batch}" + (
            ", frozen DAE in the loss" if pretrained_parts(cfg.vision_model) else ""
        )
        rows.append((f"see: train_vision {name}", f"{sps * batch:,.0f}", "images/s", note))

    # 3. act vs the raw env, all on one vector env, so that every figure sees the same workers.
    act_cfg = compose("act", overrides + [f"vision_model={ENCODER}"])
    source = domains(act_cfg, "source")
    agent = act_cfg.agent.algorithm
    print(
        f"[3/3] starting {act_cfg.num_envs} {act_cfg.vec_env} workers over {len(source)} source domains ...", flush=True
    )
    start = time.perf_counter()
    raw_env = make_vec_env(source, act_cfg.num_envs, act_cfg.vec_env, act_cfg.seed)
    build_every_domain(raw_env, [d.name for d in source])
    startup_s = time.perf_counter() - start
    # An untrained encoder costs what a trained one does; LatentObservation is what make_vec_env
    # puts over the workers when it is handed an encoder.
    encoded_env = LatentObservation(raw_env, build_vision_model(act_cfg), device)
    # The act stage runs its encoder and policy with cfg.policy_threads torch threads.
    torch.set_num_threads(args.torch_threads or act_cfg.policy_threads)
    latent_agent = build_agent(act_cfg.agent, encoded_env, act_cfg.seed, device, PolicyInput("latents"))
    pixel_agent = build_agent(act_cfg.agent, raw_env, act_cfg.seed, device, PolicyInput("pixels"))
    # The machine's speed drifts (a shared VM): measure a-d in alternating rounds, so each ratio
    # compares figures taken minutes apart at most, and report medians over rounds.
    rates: dict[str, list[float]] = {"raw": [], "encoded": [], "act": [], "pixels": []}
    try:
        for r in range(sizes.rounds):
            print(
                f"      round {r + 1}/{sizes.rounds}: a. raw env, b. + {ENCODER} encoder, "
                f"c. {agent} on latents, d. {agent} on pixels ...",
                flush=True,
            )
            rates["raw"].append(random_steps_speed(raw_env, sizes.env_steps, sizes.env_warmup, act_cfg.seed))
            rates["encoded"].append(random_steps_speed(encoded_env, sizes.env_steps, sizes.env_warmup, act_cfg.seed))
            rates["act"].append(learning_speed(latent_agent, sizes.act_steps))
            rates["pixels"].append(learning_speed(pixel_agent, sizes.act_steps))
    finally:
        encoded_env.close()  # closes the workers underneath too

    median = {k: float(np.median(v)) for k, v in rates.items()}
    ratio = {k: float(np.median(np.array(v) / np.array(rates["raw"]))) for k, v in rates.items()}
    spread = {k: f"rounds {', '.join(f'{x:,.0f}' for x in v)}" for k, v in rates.items()}
    env_note = f"{len(source)} source domains, {act_cfg.num_envs} {act_cfg.vec_env} workers"
    rows += [
        (
            "act: (a) raw env, random actions",
            f"{median['raw']:,.0f}",
            "steps/s",
            f"{env_note}; {startup_s:.1f}s to start them; {spread['raw']}",
        ),
        (
            f"act: (b) env + {ENCODER} encoder",
            f"{median['encoded']:,.0f}",
            "steps/s",
            f"{ratio['encoded']:.2f} x raw; {spread['encoded']}",
        ),
        (
            f"act: (c) {agent} MlpPolicy on latents",
            f"{median['act']:,.0f}",
            "steps/s",
            f"{ratio['act']:.2f} x raw; {spread['act']}",
        ),
        (
            f"act: (d) {agent} CnnPolicy on pixels",
            f"{median['pixels']:,.0f}",
            "steps/s",
            f"{ratio['pixels']:.2f} x raw; {spread['pixels']}",
        ),
    ]
    print()
    print_table(rows)
    print()
    met = ratio["act"] >= ACT_GOAL
    print(
        f"goal: act (c) >= {ACT_GOAL:.1f} x raw env (a): {'MET' if met else 'NOT MET'} "
        f"(median over {sizes.rounds} rounds of act/raw = {ratio['act']:.2f})"
    )


if __name__ == "__main__":
    main()
