"""Stage 2, act: train a Stable-Baselines3 agent on the frozen latents, in the source domains.

The vision model from the see run is loaded frozen; every step's observations are encoded
in one batch and the policy (MlpPolicy) sees the latent means. The baselines read something else
(darla/policy_inputs.py): vision_model=pixels learns end to end from frames with SB3's CnnPolicy,
darla_ft trains the see run's encoder on with the policy, oracle reads the env's true task state.
Training runs in segments of ``act.eval_every`` steps; after each the agent is evaluated on each
source domain (logged under its own name) and checkpointed; the best policy, chosen on source
domains only, is kept.

Outputs in runs/<name>/act/: policy.safetensors (best on source), checkpoint/ (resume state),
eval.jsonl (per-domain evaluation curves), tensorboard/, manifest.json. Nothing is pickled:
the agent is rebuilt from the manifest's config and only parameters are loaded.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from darla.artifacts import (
    check_parent,
    find_parent,
    load_state,
    load_weights,
    read_npz,
    rng_state,
    run_dir,
    save_npz,
    save_state,
    save_weights,
    set_rng_state,
    versions,
    write_json,
    write_jsonl,
    write_manifest,
)
from darla.config import check_env, domain_settings, domains, plain, prepare, resolve_device, start_run
from darla.errors import UserError, user_facing
from darla.evaluation import describe, run_episodes
from darla.policy_inputs import PolicyInput, policy_input_kind
from darla.probe import TaskProbe
from darla.runs import build_agent, space_record
from envs.domains import Domain

log = logging.getLogger("act")  # Hydra prints it as [act] (configs/hydra/default.yaml)

EVAL_SEED = 50_000  # evaluation episodes during training; transfer uses its own seeds


def policy_view(cfg: DictConfig) -> PolicyInput:
    """What this act run's policy reads (with the see run it reads through, if any)."""
    kind = policy_input_kind(cfg.vision_model)
    if kind not in ("latents", "fine_tune"):
        return PolicyInput.load(kind, None, cfg.act.frame_stack)
    return PolicyInput.load(kind, find_parent(cfg.act.see_run, cfg.runs_dir, "see"), cfg.act.frame_stack)


class KeepSchedules(BaseCallback):
    """Training runs in segments (one ``learn`` call between evaluations); this keeps SB3's
    schedules (DQN's exploration rate) on the whole run's length rather than the segment's."""

    def __init__(self, total_timesteps: int):
        super().__init__()
        self.total_timesteps = total_timesteps

    def _on_training_start(self) -> None:
        self.model._total_timesteps = self.total_timesteps

    def _on_step(self) -> bool:
        return True


class Training:
    """The act run's state between segments: evaluation history, best policy, and the checkpoint.

    Every segment starts its training episodes afresh from seeds fixed by the run's seed and step
    count, so the checkpoint written after each evaluation (agent parameters and optimiser, DQN's
    replay buffer and exploration rate, counters and the random generators of torch, numpy, Python and the action space)
    holds everything the rest of the run depends on: a killed run resumed from it ends with the same
    weights, bit for bit on CPU, as one never interrupted.
    """

    def __init__(
        self,
        out: Path,
        agent: BaseAlgorithm,
        eval_env: VecEnv,
        domain_names: list[str],
        episodes: int,
        deterministic: bool,
    ):
        self.out, self.agent, self.eval_env, self.domain_names = out, agent, eval_env, domain_names
        self.episodes, self.deterministic = episodes, deterministic
        self.history: list[dict] = []
        self.best = {"timesteps": 0, "mean": -np.inf}  # best source mean return so far, and when

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint" / "state.safetensors"

    def save_checkpoint(self) -> None:
        agent = self.agent
        state = {
            "policy": agent.policy.state_dict(),
            "optimizer": agent.policy.optimizer.state_dict(),
            "num_timesteps": agent.num_timesteps,
            "n_calls": getattr(agent, "_n_calls", 0),
            "n_updates": getattr(agent, "_n_updates", 0),
            "history": self.history,
            "best": self.best,
            # DQN's first action after a resume is drawn with the rate of the step before it.
            "exploration_rate": float(getattr(agent, "exploration_rate", 0.0)),
            "rng": {**rng_state(), "action_space": agent.action_space.np_random.bit_generator.state},
        }
        if isinstance(agent, DQN):
            buffer = agent.replay_buffer
            arrays = {
                k: getattr(buffer, k)
                for k in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
                if getattr(buffer, k, None) is not None
            }
            save_npz(
                self.out / "checkpoint" / "replay_buffer.npz",
                pos=buffer.pos,
                full=buffer.full,
                timesteps=agent.num_timesteps,
                **arrays,
            )
        save_state(self.checkpoint, state)

    def restore(self) -> None:
        """Load the last checkpoint, if any, into the agent and this object."""
        if not self.checkpoint.exists():
            return
        agent, state = self.agent, load_state(self.checkpoint)
        agent.policy.load_state_dict(state["policy"])
        agent.policy.optimizer.load_state_dict(state["optimizer"])
        agent.num_timesteps = int(state["num_timesteps"])
        if hasattr(agent, "_n_calls"):
            agent._n_calls = int(state["n_calls"])
        agent._n_updates = int(state["n_updates"])
        if hasattr(agent, "exploration_rate"):
            agent.exploration_rate = float(state["exploration_rate"])
        self.history = list(state["history"])
        self.best = {"timesteps": int(state["best"]["timesteps"]), "mean": float(state["best"]["mean"])}
        set_rng_state(state["rng"])
        agent.action_space.np_random.bit_generator.state = state["rng"]["action_space"]
        if isinstance(agent, DQN):
            saved = read_npz(self.out / "checkpoint" / "replay_buffer.npz")
            if int(saved.pop("timesteps")) != agent.num_timesteps:
                raise UserError(
                    f"{self.out / 'checkpoint'}: the replay buffer and the agent's state are from different "
                    f"steps (a kill between the two writes); delete the act run and start it again"
                )
            agent.replay_buffer.pos, agent.replay_buffer.full = int(saved.pop("pos")), bool(saved.pop("full"))
            for key, array in saved.items():
                getattr(agent.replay_buffer, key)[...] = array
        log.info(f"resuming from {self.checkpoint} at {agent.num_timesteps} steps")

    def evaluate(self) -> None:
        """Evaluate on each source domain (fixed seeds; the training RNG streams are left as they were)."""
        agent = self.agent
        act = lambda obs: agent.predict(obs, deterministic=self.deterministic)[0]  # noqa: E731
        means = {}
        for i, name in enumerate(self.domain_names):
            episodes = run_episodes(self.eval_env, act, EVAL_SEED + 1000 * i, self.episodes, domain=name)
            stats = describe([e["return"] for e in episodes])
            means[name] = stats["mean"]
            agent.logger.record(f"eval/{name}/mean_return", stats["mean"])
            self.history.append({"timesteps": agent.num_timesteps, "domain": name, **stats})
        source_mean = float(np.mean(list(means.values())))
        agent.logger.record("eval/source_mean_return", source_mean)
        agent.logger.dump(agent.num_timesteps)
        log.info(
            f"{agent.num_timesteps} steps: source mean return {source_mean:.3f} "
            + " ".join(f"{k}={v:.2f}" for k, v in means.items())
        )
        if source_mean > self.best["mean"]:
            self.best = {"timesteps": agent.num_timesteps, "mean": source_mean}
            save_weights(self.out / "policy.safetensors", agent.policy)
        write_jsonl(self.out / "eval.jsonl", self.history)

    def check_finite(self) -> None:
        # SB3 does not stop on a diverged loss; stop here, before a NaN policy can overwrite the
        # best policy or the last good checkpoint.
        bad = [name for name, p in self.agent.policy.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            kept = (
                f"the last good checkpoint {self.checkpoint} is kept"
                if self.checkpoint.exists()
                else "no checkpoint had been written yet"
            )
            raise FloatingPointError(
                f"[act] policy parameters {bad[:3]} became non-finite by step "
                f"{self.agent.num_timesteps}; stopped, {kept}"
            )


def train(agent: BaseAlgorithm, training: Training, train_env: VecEnv, cfg: DictConfig) -> None:
    """Train to ``act.total_timesteps`` in segments of ``act.eval_every`` steps, each followed by an
    evaluation on the source domains and a checkpoint.

    Each segment resets the training envs with seed ``seed + steps so far``: the one way a run
    differs from a single SB3 ``learn`` call (episodes are cut at each evaluation, every 25k steps by
    default), and what lets an interrupted run resume exactly.
    """
    total = cfg.act.total_timesteps
    schedules = KeepSchedules(total)
    while agent.num_timesteps < total:
        train_env.seed(cfg.seed + agent.num_timesteps)
        agent._last_obs = None  # learn() resets the envs (with the seeds just set) when it has no last observation
        agent.learn(
            min(cfg.act.eval_every, total - agent.num_timesteps),
            callback=schedules,
            reset_num_timesteps=False,
            progress_bar=True,
            tb_log_name=cfg.agent.name,
        )
        training.check_finite()
        training.evaluate()
        training.save_checkpoint()


def run(cfg: DictConfig) -> Path:
    prepare(cfg)
    out = run_dir(cfg.runs_dir, cfg.name, "act")
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.policy_threads)
    source: list[Domain] = domains(cfg, "source")
    view = policy_view(cfg)
    see_manifest = view.see_manifest
    if see_manifest is not None:
        # domains() has checked that the env's frames are env.observation_shape.
        check_env(view.see_dir, see_manifest, cfg)
        check_parent(view.see_dir, see_manifest, {"input_shape": list(cfg.env.observation_shape)})
    settings = {
        "source_domains": domain_settings(source),
        "agent": plain(cfg.agent),
        "seed": cfg.seed,
        "num_envs": cfg.num_envs,
        "vision_model": cfg.vision_model.name,
        "policy_input": view.kind,
        "act": {k: v for k, v in plain(cfg.act).items() if k != "see_run"},
        "see_hash": see_manifest["content_hash"] if see_manifest else None,
    }
    if start_run(out, settings, cfg):
        log.info(f"{out} is finished with these settings; nothing to do")
        return out
    t0 = time.perf_counter()
    if cfg.act.normalize:
        view.normalize()
    if cfg.act.resample_nuisance:
        view.resample_nuisance(cfg)
        log.info(
            f"redrawing in training the latents the task probe finds no task quantity needs: {view.nuisance['latents']}"
        )
    train_env = view.vec_env(source, cfg.num_envs, cfg.vec_env, cfg.seed, device, training=True)
    # Evaluation runs in this process, between segments, one source domain at a time.
    eval_env = view.vec_env(source, min(cfg.num_envs, cfg.act.eval_episodes), "dummy", None, device)
    try:
        agent = build_agent(cfg.agent, train_env, cfg.seed, device, view, tensorboard_log=out / "tensorboard")
        training = Training(
            out, agent, eval_env, [d.name for d in source], cfg.act.eval_episodes, cfg.act.deterministic
        )
        training.restore()
        train(agent, training, train_env, cfg)
    finally:
        train_env.close()
        eval_env.close()

    if view.kind in ("pixels", "fine_tune"):
        probe_policy_features(out, agent, view, cfg, device)

    best = training.best
    write_manifest(
        out,
        {
            "stage": "act",
            "agent": plain(cfg.agent),
            "vision_model": cfg.vision_model.name,
            "policy": view.policy,
            "policy_input": view.kind,
            "frame_stack": view.frame_stack,
            "latent_normalization": view.normalization,
            "nuisance_latents": view.nuisance,
            "see_dir": str(view.see_dir) if view.see_dir else None,
            "see_hash": settings["see_hash"],
            "observation_shape": list(train_env.observation_space.shape),
            "action_space": space_record(train_env.action_space),
            "env_id": cfg.env.id,
            "env_name": cfg.env.name,
            "source_domains": [d.name for d in source],
            "timesteps": int(agent.num_timesteps),
            "best": best,
            "train_seconds": time.perf_counter() - t0,
            "versions": versions(),
        },
    )
    log.info(f"done: {out} (best source mean return {best['mean']:.3f} at {best['timesteps']} steps)")
    return out


def policy_features(agent: BaseAlgorithm, device: torch.device):
    """uint8 frames (N, H, W, C) -> the features the policy computes from them (its CNN, or the
    fine-tuned encoder's mean), as numpy (N, D)."""
    net = agent.policy.q_net if isinstance(agent, DQN) else agent.policy
    extractor = getattr(net, "features_extractor", None) or net.pi_features_extractor
    agent.policy.set_training_mode(False)

    @torch.no_grad()
    def represent(frames: np.ndarray) -> np.ndarray:
        batches = (
            torch.as_tensor(frames[i : i + 256], device=device).permute(0, 3, 1, 2) for i in range(0, len(frames), 256)
        )
        return np.concatenate([net.extract_features(obs, extractor).float().cpu().numpy() for obs in batches])

    return represent


def probe_policy_features(
    out: Path, agent: BaseAlgorithm, view: PolicyInput, cfg: DictConfig, device: torch.device
) -> None:
    """The task probe (darla/probe.py) of an encoder RL trained — the pixel agent's CNN, DARLA_FT's
    fine-tuned vision — on the best policy's features: act/metrics.json. A stacked policy reads
    several frames at once, which the probe's single frames cannot feed: skipped."""
    if view.frame_stack > 1:
        log.info(f"no task probe of the policy's features: it reads {view.frame_stack} stacked frames")
        return
    probe = (
        TaskProbe.of_see_run(view.see_dir, view.see_manifest, cfg)
        if view.kind == "fine_tune"
        else TaskProbe.of_own_frames(out, cfg)
    )
    if probe is None:
        return
    load_weights(out / "policy.safetensors", agent.policy)  # the policy transfer plays: the best one
    scores = probe.scores(policy_features(agent, device))
    write_json(out / "metrics.json", {"task_probe": scores})
    shown = {k: "none" if scores[k] is None else f"{scores[k]:.3f}" for k in ("heldout", "targets")}
    log.info(f"task probe of the policy's features: held-out episodes {shown['heldout']}, targets {shown['targets']}")


@hydra.main(config_path="../configs", config_name="act", version_base="1.3")
@user_facing("act")
def main(cfg: DictConfig) -> None:
    run(cfg)
