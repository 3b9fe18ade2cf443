"""What the policy reads, chosen by ``vision_model.policy_input``:

- ``latents`` (every vision model by default): the frozen encoder's mean of each frame, encoded
  for the whole vector env in one batch (LatentObservation); SB3's MlpPolicy. DARLA itself.
- ``pixels``: raw frames, SB3's CnnPolicy learning end to end (vision_model=pixels).
- ``fine_tune``: raw frames through the see run's encoder, which RL then trains along with the
  policy (vision_model=darla_ft: the paper's DARLA_FT ablation).
- ``state``: the env's ground-truth task state instead of frames (vision_model=oracle), an upper
  bound on what any vision can give the policy; the env must report it (see StateObservation).

act and transfer both build the policy's environment and the agent through ``PolicyInput``, so
a policy is always evaluated on exactly the observations it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack

from darla.artifacts import MANIFEST, read_manifest, read_npz
from darla.errors import UserError
from darla.latent_env import LatentObservation
from darla.probe import nuisance_latents
from darla.runs import load_vision_model
from darla.vec_env import make_vec_env
from envs.domains import Domain

KINDS = ("latents", "pixels", "fine_tune", "state")


def policy_input_kind(vision_model_cfg: DictConfig) -> str:
    """The policy input a vision model's YAML asks for (``policy_input``, default ``latents``)."""
    kind = vision_model_cfg.get("policy_input", "latents")
    if kind not in KINDS:
        raise ValueError(
            f"vision_model.policy_input={kind!r} (vision_model={vision_model_cfg.name}) is not known; "
            f"expected one of {list(KINDS)}"
        )
    if kind in ("latents", "fine_tune") and vision_model_cfg.model is None:
        raise ValueError(
            f"vision_model={vision_model_cfg.name} has policy_input={kind} but no model to see with; "
            f"set vision_model.model, or policy_input to pixels or state"
        )
    return kind


class FineTunedEncoder(BaseFeaturesExtractor):
    """The see run's vision model as the policy's feature extractor, trained further by RL.

    Features are the encoder mean, as for the frozen DARLA policy, so DARLA and DARLA_FT differ
    only in whether RL's gradients reach the encoder. The see run's weights are the starting
    point; a trained policy's own copy of them is loaded over these by ``load_policy``.
    """

    def __init__(self, observation_space: gym.spaces.Box, see_dir: str):
        vision, _ = load_vision_model(Path(see_dir))
        super().__init__(observation_space, features_dim=vision.latent_dim)
        self.vision = vision.requires_grad_(True)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.vision.representation(observations)


@dataclass
class PolicyInput:
    """How frames become the policy's observations, for one act run and its transfer."""

    kind: str
    see_dir: Path | None = None
    encoder: torch.nn.Module | None = None  # the frozen vision model, for kind == "latents"
    see_manifest: dict | None = None  # the manifest of see_dir
    frame_stack: int = 1  # the policy sees its last frame_stack observations (act.frame_stack)
    normalization: dict | None = None  # {"mean", "std"} per latent (act.normalize), for kind == "latents"
    nuisance: dict | None = None  # {"latents", "importance"}: redrawn in training (act.resample_nuisance)
    pool: np.ndarray | None = None  # codes of exploration frames the nuisance latents are drawn from

    @classmethod
    def load(cls, kind: str, see_dir: Path | None, frame_stack: int = 1) -> "PolicyInput":
        if kind not in ("latents", "fine_tune"):
            return cls(kind, frame_stack=frame_stack)
        if see_dir is None:
            raise ValueError(f"policy_input={kind} needs the see run that trained the encoder")
        if kind == "latents":
            encoder, manifest = load_vision_model(see_dir)
            return cls(kind, see_dir, encoder, manifest, frame_stack)
        return cls(kind, see_dir, None, read_manifest(see_dir, "see"), frame_stack)

    @classmethod
    def of_act_run(cls, act_dir: Path, manifest: dict) -> "PolicyInput":
        """What a finished act run's policy reads, with its see run checked against the act manifest's hash."""
        see_dir = Path(manifest["see_dir"]) if manifest.get("see_dir") else None
        view = cls.load(manifest["policy_input"], see_dir, int(manifest.get("frame_stack", 1)))
        view.check_normalization(manifest.get("latent_normalization"), act_dir / MANIFEST)
        if view.see_manifest is not None and view.see_manifest["content_hash"] != manifest["see_hash"]:
            raise UserError(
                f"the policy in {act_dir} was trained on the encoder with hash {manifest['see_hash']}, "
                f"but {see_dir} now holds {view.see_manifest['content_hash']}"
            )
        return view

    def exploration_codes(self, setting: str, max_frames: int = 5000) -> np.ndarray:
        """The latents of the see run's exploration frames (at most ``max_frames``, evenly spaced)."""
        frames_path = self.see_dir / "frames.npz" if self.see_dir else None
        if self.kind != "latents" or not frames_path.exists():
            raise UserError(
                f"{setting}=true needs a frozen vision's latents and its see run's exploration frames "
                f"({frames_path}); this policy reads {self.kind}"
            )
        frames = read_npz(frames_path, "frames")["frames"]
        frames = frames[np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int)]
        return self.represent(frames)

    def represent(self, frames: np.ndarray) -> np.ndarray:
        """The frozen vision's latents of uint8 frames, as the policy reads them before normalisation."""
        return np.concatenate(
            [LatentObservation.encode_with(self.encoder, frames[i : i + 512]) for i in range(0, len(frames), 512)]
        )

    def normalize(self) -> None:
        """Standardise the latents the policy reads by their mean and std over the see run's
        exploration frames: source data only, fixed before training, so a policy meets target
        domains with the scale it learned on."""
        codes = self.exploration_codes("act.normalize")
        self.normalization = {"mean": codes.mean(0).tolist(), "std": np.sqrt(codes.var(0) + 1e-8).tolist()}

    def resample_nuisance(self, cfg: DictConfig) -> None:
        """In training, redraw the latents no task quantity needs (darla/probe.py: nuisance_latents,
        from exploration frames and the task probe alone) from their values on exploration frames:
        the policy learns to ignore what a target domain may change there. Zero-shot: no target frame
        or reward is used."""
        self.pool = self.exploration_codes("act.resample_nuisance")
        self.nuisance = nuisance_latents(self.see_dir, self.see_manifest, cfg, self.represent)

    def check_normalization(self, record: Any, source: Path) -> None:
        """Take a normalization read back from an act manifest, after checking that it is one."""
        if record is None:
            return
        ok = (
            isinstance(record, dict)
            and set(record) == {"mean", "std"}
            and self.encoder is not None
            and all(
                isinstance(record[k], list)
                and len(record[k]) == self.encoder.latent_dim
                and all(isinstance(v, (int, float)) and np.isfinite(v) for v in record[k])
                for k in record
            )
            and all(v > 0 for v in record["std"])
        )
        if not ok:
            raise UserError(
                f"{source}: latent_normalization must be {{mean, std}}, each a list of "
                f"{getattr(self.encoder, 'latent_dim', '?')} finite numbers (std > 0)"
            )
        self.normalization = record

    @property
    def policy(self) -> str:
        """The SB3 policy class: a CNN over frames, or an MLP over vectors."""
        return "CnnPolicy" if self.kind in ("pixels", "fine_tune") else "MlpPolicy"

    def policy_kwargs(self) -> dict[str, Any]:
        if self.kind == "fine_tune":
            return {
                "features_extractor_class": FineTunedEncoder,
                "features_extractor_kwargs": {"see_dir": str(self.see_dir)},
            }
        return {}

    def vec_env(
        self,
        domains: Sequence[Domain],
        num_envs: int,
        kind: str,
        seed: int | None,
        device: torch.device,
        training: bool = False,
    ) -> VecEnv:
        """The policy's env over ``domains``; with ``training``, nuisance latents are redrawn."""
        encoder = self.encoder if self.kind == "latents" else None
        resample = (self.nuisance["latents"], self.pool) if training and self.nuisance else None
        return self.stack(
            make_vec_env(
                domains,
                num_envs,
                kind,
                seed,
                encoder,
                device,
                state=self.kind == "state",
                normalization=self.normalization,
                resample=resample,
            )
        )

    def observe(self, venv: VecEnv, device: torch.device) -> VecEnv:
        """The policy's view of a vector env of frames (latents if it reads them, then the stack)."""
        if self.encoder is not None:
            venv = LatentObservation(venv, self.encoder, device, self.normalization)
        return self.stack(venv)

    def stack(self, venv: VecEnv) -> VecEnv:
        """The last ``frame_stack`` observations side by side (latents, states, or frames' channels):
        a short history, for tasks where velocity matters."""
        return VecFrameStack(venv, self.frame_stack) if self.frame_stack > 1 else venv
