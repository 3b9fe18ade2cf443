"""Episode videos: watch a trained policy play, on source and target domains.

    python -m darla.stage video <run> [video.domains=[...]] [video.episodes=2] [video.format=mp4] ...

``<run>`` is a run name (``runs/<name>/act``) or the directory of a run, an act run or a transfer
run. The policy is rebuilt exactly as transfer rebuilds it (its own policy input: the frozen
encoder's latents, pixels, or a fine-tuned encoder) and plays on a one-env vector env through
transfer's ``run_episodes``: episode k of a domain is reset with seed ``video.seed + k`` (by
default transfer's first seed, so the first video is transfer's first episode on that domain).
What is filmed is the env's own RGB frames, recorded below the latent encoding, enlarged by
``video.scale`` and captioned with the domain, seed, step and return so far.

Outputs in <run>/video/: ``<domain>_seed<k>.gif`` (or ``.mp4``), and ``episodes.jsonl`` with one
line per file (domain, role, seed, return, length, file, act_hash). Like ``diagnose``, each call
rewrites the files it is asked for and leaves the others; every file is written atomically.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import cv2
import hydra
import numpy as np
import torch
from omegaconf import DictConfig, ListConfig
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from darla.artifacts import atomic_write, find_parent, read_jsonl, read_manifest, write_jsonl
from darla.config import named_domains, prepare, record_invocation, resolve_device
from darla.errors import UserError, user_facing
from darla.evaluation import run_episodes
from darla.images import save_gif
from darla.policy_inputs import PolicyInput
from darla.runs import load_policy, read_act_run
from darla.vec_env import make_vec_env
from envs.domains import Domain

log = logging.getLogger("video")  # Hydra prints it as [video] (configs/hydra/default.yaml)

CAPTION_HEIGHT = 28  # two lines of 8-px text under each frame (even, as MPEG-4 wants)


class EpisodeRecorder(VecEnvWrapper):
    """Keep the raw frames and rewards of env 0's current episode, as the env produced them.

    Wraps the vector env below any observation encoding (LatentObservation goes on top), so
    the frames are what a person would see, whatever the policy reads. A reset starts a new
    recording; the episode's last frame is the terminal observation of the step that ended it.
    """

    def __init__(self, venv: VecEnv):
        super().__init__(venv)
        self.frames: list[np.ndarray] = []
        self.rewards: list[float] = []

    def reset(self) -> np.ndarray:
        obs = self.venv.reset()
        self.frames, self.rewards = [obs[0]], []
        return obs

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        self.frames.append(infos[0]["terminal_observation"] if dones[0] else obs[0])
        self.rewards.append(float(rewards[0]))
        return obs, rewards, dones, infos


def caption_frames(
    frames: Sequence[np.ndarray], rewards: Sequence[float], domain: str, seed: int, scale: int
) -> list[np.ndarray]:
    """Enlarge each uint8 (H, W, 3) frame ``scale`` times and write under it the return so far."""
    returns = np.concatenate([[0.0], np.cumsum(rewards)])
    out = []
    for step, (frame, ret) in enumerate(zip(frames, returns)):
        big = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        band = np.full((CAPTION_HEIGHT, big.shape[1], 3), 255, np.uint8)
        for row, text in enumerate((domain, f"seed {seed}  step {step}  return {ret:g}")):
            cv2.putText(band, text, (3, 11 + 13 * row), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
        out.append(np.concatenate([big, band], axis=0))
    return out


def save_video(path: Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write RGB uint8 frames as an animated GIF or an MPEG-4 video (by ``path``'s suffix), atomically."""
    fmt = path.suffix.lstrip(".")
    if fmt == "gif":
        return save_gif(path, frames, round(1000 / fps))
    if fmt != "mp4":
        raise UserError(f"cannot write {path}: expected a .gif or .mp4 file")

    def write(tmp: Path) -> None:
        # OpenCV picks the container from the file name, so encode under an .mp4 name first.
        staging = tmp.with_name(tmp.name + ".mp4")
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(staging), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        try:
            if not writer.isOpened():
                raise RuntimeError(f"OpenCV could not open an MPEG-4 writer for {path} (is it built with FFmpeg?)")
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            writer.release()
            os.replace(staging, tmp)
        finally:
            writer.release()
            staging.unlink(missing_ok=True)

    return atomic_write(path, write)


def find_act_run(ref: str, runs_dir: str) -> Path:
    """The act run behind ``ref``: a run name, a run directory, an act directory or a transfer directory."""
    found = find_parent(ref, runs_dir, "act")
    manifest = read_manifest(found)
    if manifest.get("stage") == "transfer":
        return Path(manifest["act_dir"])
    if manifest.get("stage") != "act":
        raise UserError(
            f"{found} holds a {manifest.get('stage')} run; video plays the policy of an act run "
            f"(name one, or its run or transfer directory)"
        )
    return found


def video_domains(cfg: DictConfig) -> list[tuple[str, Domain]]:
    """(role, domain) of each domain to film: ``video.domains``, or the first source and first target."""
    env = cfg.env
    names = cfg.video.domains
    if names is None:
        names = [env.source[0]] + ([env.targets[0]] if env.get("targets") else [])
    if not isinstance(names, (list, ListConfig)) or not names:
        raise UserError(
            f"video.domains={names!r}: expected a list of domain names of env {env.name!r}, "
            f"e.g. video.domains=[{env.source[0]}]"
        )
    found = named_domains(cfg, list(names), "video")
    roles = {**{n: "target" for n in env.get("targets") or []}, **{n: "source" for n in env.source}}
    return [(roles.get(d.name, "other"), d) for d in found]


def run(cfg: DictConfig) -> Path:
    prepare(cfg)
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.policy_threads)
    act_dir = find_act_run(cfg.video.run, cfg.runs_dir)
    act_manifest = read_act_run(act_dir)
    view = PolicyInput.of_act_run(act_dir, act_manifest)
    if view.kind == "state":
        raise UserError(
            f"{act_dir} is an oracle run (policy_input=state): its env workers replace frames by "
            f"states, so there are no frames to film"
        )
    filmed = video_domains(cfg)
    out = act_dir.parent / "video"
    record_invocation(out, cfg)

    # The recorder sits on the raw frames; the policy's own view (latents, or the frames themselves) goes on top.
    recorder = EpisodeRecorder(make_vec_env([d for _, d in filmed], 1, "dummy", None))
    venv = view.observe(recorder, device)
    rows = []
    try:
        agent = load_policy(act_dir, act_manifest, view, venv, device)

        def act(obs):
            return agent.predict(obs, deterministic=cfg.act.deterministic)[0]

        for role, domain in filmed:
            for k in range(cfg.video.episodes):
                seed = cfg.video.seed + k
                [episode] = run_episodes(venv, act, seed, 1, domain=domain.name)
                frames = caption_frames(recorder.frames, recorder.rewards, domain.name, seed, cfg.video.scale)
                path = save_video(out / f"{domain.name}_seed{seed}.{cfg.video.format}", frames, cfg.video.fps)
                rows.append(
                    {
                        "domain": domain.name,
                        "role": role,
                        **episode,
                        "file": path.name,
                        "act_hash": act_manifest["content_hash"],
                    }
                )
                log.info(
                    f"{role} {domain.name} seed {seed}: return {episode['return']:g} "
                    f"in {episode['length']} steps -> {path}"
                )
    finally:
        venv.close()
    # The index keeps the lines of files this call did not rewrite.
    index = out / "episodes.jsonl"
    written = {r["file"] for r in rows}
    kept = [r for r in read_jsonl(index) if r["file"] not in written] if index.exists() else []
    write_jsonl(index, kept + rows)
    log.info(f"done: {out}")
    return out


def positional_run(args: list[str]) -> list[str]:
    """Turn ``video <run> ...`` into Hydra overrides.

    A run name becomes ``name=<run>``, so the videos and Hydra's own log land in runs/<name>/video/;
    a directory becomes ``video.run=<dir>`` with Hydra's log sent to that run's video/ directory.
    """
    if not args or "=" in args[0] or args[0].startswith("-"):
        return args
    ref, rest = args[0], args[1:]
    path = Path(ref)
    if not path.is_dir():
        return [f"name={ref}", *rest]
    root = path.parent if path.name in ("act", "transfer") else path
    return [f"video.run='{path}'", f"hydra.run.dir='{root / 'video'}'", *rest]


@hydra.main(config_path="../configs", config_name="video", version_base="1.3")
@user_facing("video")
def _main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    sys.argv[1:] = positional_run(sys.argv[1:])
    _main()
