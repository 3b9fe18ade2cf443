"""Options of what the policy reads, through the CLI at tiny budgets: act.frame_stack (its last k
observations, latents or frames) and act.normalize (standardised latents), in act, transfer and video."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import check_ok, reseal, run_cli, tiny_act_args
from darla.artifacts import read_json, read_npz, write_json
from darla.latent_env import LatentObservation
from darla.runs import load_vision_model


@pytest.mark.parametrize("vision_model, shape", [("beta_vae_dae", [96]), ("pixels", [64, 64, 9])])
def test_a_stacked_policy_trains_transfers_and_is_filmed(quick_run, tmp_path, vision_model, shape):
    runs = tmp_path / "runs"
    args = [*tiny_act_args(runs, quick_run.see, "stacked"), f"vision_model={vision_model}", "act.frame_stack=3"]
    check_ok(run_cli("act", *args, cwd=tmp_path, timeout=300))
    manifest = read_json(runs / "stacked" / "act" / "manifest.json")
    assert manifest["frame_stack"] == 3 and manifest["observation_shape"] == shape
    check_ok(run_cli("transfer", *args, cwd=tmp_path, timeout=300))
    assert read_json(runs / "stacked" / "transfer" / "summary.json")["target"]["episodes"] == 2
    check_ok(run_cli("video", "stacked", *args[:2], "+env.kwargs.max_episode_steps=30", cwd=tmp_path, timeout=300))
    assert list((runs / "stacked" / "video").glob("*.gif"))


def test_stacking_is_refused_for_the_fine_tuned_encoder(tmp_path):
    proc = run_cli(
        "act",
        "experiment=quick",
        f"runs_dir={tmp_path}",
        "vision_model=darla_ft",
        "act.frame_stack=2",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "act.frame_stack=2 is not allowed with vision_model.policy_input=fine_tune" in proc.stderr


def test_normalized_latents_are_standardised_on_the_see_frames_and_reach_transfer_and_video(quick_run, tmp_path):
    runs = tmp_path / "runs"
    args = [*tiny_act_args(runs, quick_run.see, "normalized"), "act.normalize=true"]
    check_ok(run_cli("act", *args, cwd=tmp_path, timeout=300))
    act = runs / "normalized" / "act"
    record = read_json(act / "manifest.json")["latent_normalization"]
    # The statistics are those of the see run's 600 exploration frames, encoded as the policy reads them.
    encoder, _ = load_vision_model(quick_run.see)
    codes = LatentObservation.encode_with(encoder, read_npz(quick_run.see / "frames.npz", "frames")["frames"])
    np.testing.assert_allclose(record["mean"], codes.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(record["std"], np.sqrt(codes.var(0) + 1e-8), rtol=1e-4, atol=1e-6)
    standardised = np.clip((codes - record["mean"]) / np.array(record["std"]), -10, 10)
    assert np.abs(standardised.mean(0)).max() < 0.05
    check_ok(run_cli("transfer", *args, cwd=tmp_path, timeout=300))
    check_ok(run_cli("video", "normalized", *args[:2], "+env.kwargs.max_episode_steps=30", cwd=tmp_path, timeout=300))
    assert list((runs / "normalized" / "video").glob("*.gif"))

    # A normalization in the manifest is data, checked like the rest: a wrong length is refused.
    manifest = read_json(act / "manifest.json")
    write_json(act / "manifest.json", {**manifest, "latent_normalization": {"mean": [0.0], "std": [1.0]}})
    reseal(act)
    proc = run_cli("transfer", *args, "overwrite=true", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "latent_normalization must be {mean, std}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_normalizing_is_refused_for_policies_that_read_no_frozen_latents(tmp_path):
    proc = run_cli(
        "act",
        "experiment=quick",
        f"runs_dir={tmp_path}",
        "vision_model=pixels",
        "act.normalize=true",
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "act.normalize=true is not allowed with vision_model.policy_input=pixels" in proc.stderr


def test_nuisance_latents_are_chosen_from_exploration_frames_and_redrawn_in_training_only(quick_run, tmp_path):
    runs = tmp_path / "runs"
    args = [*tiny_act_args(runs, quick_run.see, "resampled"), "act.resample_nuisance=true"]
    proc = check_ok(run_cli("act", *args, cwd=tmp_path, timeout=300))
    nuisance = read_json(runs / "resampled" / "act" / "manifest.json")["nuisance_latents"]
    assert set(nuisance["importance"]) <= {
        "agent_x",
        "agent_z",
        "heading_cos",
        "heading_sin",
        "good_in_view",
        "nearest_kind",
        "nearest_bearing",
        "nearest_distance",
    }
    assert nuisance["importance"] and all(len(v) == 32 for v in nuisance["importance"].values())
    needed = np.max(np.array(list(nuisance["importance"].values())), axis=0)
    assert nuisance["latents"] == np.flatnonzero(needed < 0.01).tolist()
    assert (
        f"redrawing in training the latents the task probe finds no task quantity needs: {nuisance['latents']}"
        in proc.stdout
    )
    check_ok(run_cli("transfer", *args, cwd=tmp_path, timeout=300))
