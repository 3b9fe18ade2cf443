"""Stage 2, act: train a Stable-Baselines3 agent on the frozen latents, in the source domains.

The vision model from the see run is loaded frozen; every step's observations are encoded
in one batch and the policy (MlpPolicy) sees the latent means. The baselines read something else
(darla/policy_inputs.py): vision_model=pixels learns end to end from frames with SB3's CnnPolicy,
darla_ft trains the see run's encoder on with the policy, oracle reads the env's true task state.
The agent is evaluated periodically on each source domain (logged under its own
name); the best policy, chosen on source domains only, is kept.

Outputs in runs/<name>/act/: policy.safetensors (best on source), checkpoint/ (resume state),
eval.jsonl (per-domain evaluation curves), tensorboard/, manifest.json. Nothing is pickled:
the agent is rebuilt from the manifest's config and only parameters are loaded.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from darla.artifacts import (MANIFEST, check_parent, file_hash, find_parent, load_state, load_weights, read_json,
                             run_dir, save_npz, save_state, save_weights, versions, write_json, write_jsonl)
from darla.config import domain_settings, domains, plain, resolve_device, start_run
from darla.evaluation import describe, run_episodes
from darla.policy_inputs import PolicyInput, policy_input_kind
from envs.domains import Domain

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"PPO": PPO, "DQN": DQN}
EVAL_SEED = 50_000  # evaluation episodes during training; transfer uses its own seeds


def build_agent(agent_cfg, env: VecEnv, seed: int, device: torch.device, view: PolicyInput,
                tensorboard_log: Path | None = None) -> BaseAlgorithm:
    """A fresh SB3 agent from its config, with the policy class ``view`` reads through."""
    algorithm = ALGORITHMS.get(agent_cfg.algorithm)
    if algorithm is None:
        raise ValueError(f"agent.algorithm={agent_cfg.algorithm!r} is not known; expected one of {sorted(ALGORITHMS)}")
    hyperparameters = plain(agent_cfg.hyperparameters)
    hyperparameters["policy_kwargs"] = {**hyperparameters.get("policy_kwargs", {}), **view.policy_kwargs()}
    return algorithm(view.policy, env, seed=seed, device=device, verbose=0,
                     tensorboard_log=str(tensorboard_log) if tensorboard_log else None, **hyperparameters)


def policy_view(cfg: DictConfig) -> PolicyInput:
    """What this act run's policy reads (with the see run it reads through, if any)."""
    kind = policy_input_kind(cfg.vision_model)
    if kind not in ("latents", "fine_tune"):
        return PolicyInput.load(kind, None)
    return PolicyInput.load(kind, find_parent(cfg.act.see_run, cfg.runs_dir, "see"))


class SourceEvaluation(BaseCallback):
    """Every ``eval_every`` steps: evaluate on each source domain, keep the best policy, checkpoint.

    The best policy is chosen on the mean return over source domains only. The checkpoint
    (policy, optimiser, counters, evaluation history, DQN's replay buffer) is written right
    after each evaluation, so a resumed run repeats no evaluation and loses at most
    ``eval_every`` steps.
    """

    def __init__(self, out: Path, eval_env: VecEnv, domain_names: list[str], eval_every: int, episodes: int,
                 deterministic: bool):
        super().__init__()
        self.out, self.eval_env, self.domain_names = out, eval_env, domain_names
        self.eval_every, self.episodes, self.deterministic = eval_every, episodes, deterministic
        self.history: list[dict] = []
        self.best = {"timesteps": 0, "mean": -np.inf}  # best source mean return so far, and when
        self.next_eval = eval_every

    # -- checkpoint ---------------------------------------------------------------------------

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint" / "state.safetensors"

    def save_checkpoint(self) -> None:
        agent = self.model
        state = {"policy": agent.policy.state_dict(), "optimizer": agent.policy.optimizer.state_dict(),
                 "num_timesteps": agent.num_timesteps, "n_calls": getattr(agent, "_n_calls", 0),
                 "history": self.history, "best": self.best, "next_eval": self.next_eval}
        if isinstance(agent, DQN):
            buffer = agent.replay_buffer
            arrays = {k: getattr(buffer, k) for k in ("observations", "next_observations", "actions", "rewards",
                                                      "dones", "timeouts") if getattr(buffer, k, None) is not None}
            save_npz(self.out / "checkpoint" / "replay_buffer.npz", pos=buffer.pos, full=buffer.full, **arrays)
        save_state(self.checkpoint, state)

    def restore(self, agent: BaseAlgorithm) -> None:
        """Load the last checkpoint, if any, into ``agent`` and this callback."""
        if not self.checkpoint.exists():
            return
        state = load_state(self.checkpoint)
        agent.policy.load_state_dict(state["policy"])
        agent.policy.optimizer.load_state_dict(state["optimizer"])
        agent.num_timesteps = int(state["num_timesteps"])
        if hasattr(agent, "_n_calls"):
            agent._n_calls = int(state["n_calls"])
        self.history, self.next_eval = list(state["history"]), int(state["next_eval"])
        self.best = {"timesteps": int(state["best"]["timesteps"]), "mean": float(state["best"]["mean"])}
        buffer_file = self.out / "checkpoint" / "replay_buffer.npz"
        if isinstance(agent, DQN) and buffer_file.exists():
            with np.load(buffer_file, allow_pickle=False) as saved:
                for key in saved.files:
                    if key in ("pos", "full"):
                        setattr(agent.replay_buffer, key, saved[key].item())
                    else:
                        getattr(agent.replay_buffer, key)[...] = saved[key]
        print(f"[act] resuming from {self.checkpoint} at {agent.num_timesteps} steps")

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self) -> None:
        agent = self.model
        act = lambda obs: agent.predict(obs, deterministic=self.deterministic)[0]  # noqa: E731
        means = {}
        for i, name in enumerate(self.domain_names):
            episodes = run_episodes(self.eval_env, act, EVAL_SEED + 1000 * i, self.episodes, domain=name)
            stats = describe([e["return"] for e in episodes])
            means[name] = stats["mean"]
            self.logger.record(f"eval/{name}/mean_return", stats["mean"])
            self.history.append({"timesteps": agent.num_timesteps, "domain": name, **stats})
        source_mean = float(np.mean(list(means.values())))
        self.logger.record("eval/source_mean_return", source_mean)
        print(f"[act] {agent.num_timesteps} steps: source mean return {source_mean:.3f} "
              + " ".join(f"{k}={v:.2f}" for k, v in means.items()))
        if source_mean > self.best["mean"]:
            self.best = {"timesteps": agent.num_timesteps, "mean": source_mean}
            save_weights(self.out / "policy.safetensors", agent.policy)
        write_jsonl(self.out / "eval.jsonl", self.history)

    def evaluate_and_checkpoint(self) -> None:
        # SB3 does not stop on a diverged loss; stop here, before a NaN policy can overwrite the
        # best policy or the last good checkpoint.
        bad = [name for name, p in self.model.policy.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise FloatingPointError(f"[act] policy parameters {bad[:3]} became non-finite by step "
                                     f"{self.model.num_timesteps}; stopped, the last good checkpoint "
                                     f"{self.checkpoint} is kept")
        self.evaluate()
        self.next_eval = self.model.num_timesteps + self.eval_every
        self.save_checkpoint()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.next_eval:
            self.evaluate_and_checkpoint()
        return True


def run(cfg: DictConfig) -> Path:
    out = run_dir(cfg.runs_dir, cfg.name, "act")
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.policy_threads)
    source: list[Domain] = domains(cfg, "source")
    view = policy_view(cfg)
    see_manifest = view.see_manifest
    if see_manifest is not None:
        # domains() has checked that the env's frames are env.observation_shape.
        check_parent(view.see_dir, see_manifest, {"input_shape": list(cfg.env.observation_shape)})
    settings = {"source_domains": domain_settings(source), "agent": plain(cfg.agent), "seed": cfg.seed,
                "num_envs": cfg.num_envs, "vision_model": cfg.vision_model.name, "policy_input": view.kind,
                "act": {k: v for k, v in plain(cfg.act).items() if k != "see_run"},
                "see_hash": see_manifest["content_hash"] if see_manifest else None}
    if start_run(out, settings, cfg.overwrite):
        print(f"[act] {out} is finished with these settings; nothing to do")
        return out
    t0 = time.perf_counter()
    train_env = view.vec_env(source, cfg.num_envs, cfg.vec_env, cfg.seed, device)
    # Evaluation runs in this process, between updates, one source domain at a time.
    eval_env = view.vec_env(source, min(cfg.num_envs, cfg.act.eval_episodes), "dummy", None, device)
    agent = build_agent(cfg.agent, train_env, cfg.seed, device, view, tensorboard_log=out / "tensorboard")
    evaluation = SourceEvaluation(out, eval_env, [d.name for d in source], cfg.act.eval_every, cfg.act.eval_episodes, cfg.act.deterministic)
    evaluation.restore(agent)
    try:
        remaining = cfg.act.total_timesteps - agent.num_timesteps
        if remaining > 0:
            agent.learn(remaining, callback=evaluation, reset_num_timesteps=False, progress_bar=True,
                        tb_log_name=cfg.agent.name)
        # The last evaluation must see the final policy (learn() runs the callback as it goes).
        if evaluation.history[-1]["timesteps"] < agent.num_timesteps:
            evaluation.evaluate_and_checkpoint()
    finally:
        train_env.close()
        eval_env.close()

    best = evaluation.best
    manifest = {
        "stage": "act",
        "agent": plain(cfg.agent),
        "vision_model": cfg.vision_model.name,
        "policy": view.policy,
        "policy_input": view.kind,
        "see_dir": str(view.see_dir) if view.see_dir else None,
        "see_hash": settings["see_hash"],
        "observation_shape": list(train_env.observation_space.shape),
        "env_id": cfg.env.id,
        "source_domains": [d.name for d in source],
        "timesteps": int(agent.num_timesteps),
        "best": best,
        "train_seconds": time.perf_counter() - t0,
        "versions": versions(),
        "content_hash": file_hash(out / "policy.safetensors"),
    }
    write_json(out / MANIFEST, manifest)
    print(f"[act] done: {out} (best source mean return {best['mean']:.3f} at {best['timesteps']} steps)")
    return out


def read_act_run(act_dir: Path) -> dict:
    """The manifest of a finished act run, after checking its policy file against the manifest's hash."""
    manifest = read_json(act_dir / MANIFEST)
    if file_hash(act_dir / "policy.safetensors") != manifest["content_hash"]:
        raise ValueError(f"{act_dir / 'policy.safetensors'} does not match the hash in its manifest; "
                         f"the act run was changed after it finished")
    return manifest


def load_policy(act_dir: Path, manifest: dict, view: PolicyInput, env: VecEnv, device: torch.device) -> BaseAlgorithm:
    """Rebuild the trained agent from its act run: config from the manifest (see read_act_run),
    parameters from safetensors."""
    check_parent(act_dir, manifest, {"observation_shape": list(env.observation_space.shape)})
    agent = build_agent(DictConfig(manifest["agent"]), env, seed=0, device=device, view=view)
    load_weights(act_dir / "policy.safetensors", agent.policy)
    agent.policy.set_training_mode(False)
    return agent


def policy_input_of(act_dir: Path, manifest: dict) -> PolicyInput:
    """What a finished act run's policy reads, with its see run checked against the act manifest's hash."""
    see_dir = Path(manifest["see_dir"]) if manifest["see_dir"] else None
    view = PolicyInput.load(manifest["policy_input"], see_dir)
    if view.see_manifest is not None and view.see_manifest["content_hash"] != manifest["see_hash"]:
        raise ValueError(f"the policy in {act_dir} was trained on the encoder with hash {manifest['see_hash']}, "
                         f"but {see_dir} now holds {view.see_manifest['content_hash']}")
    return view


@hydra.main(config_path="../configs", config_name="act", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run(cfg)
