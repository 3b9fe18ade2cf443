"""act.frame_stack: the policy sees its last k observations (latents or frames), in act, transfer and video."""

from __future__ import annotations

import pytest

from conftest import check_ok, run_cli
from darla.artifacts import read_json


@pytest.mark.parametrize("vision_model, shape", [("beta_vae_dae", [96]), ("pixels", [64, 64, 9])])
def test_a_stacked_policy_trains_transfers_and_is_filmed(quick_run, tmp_path, vision_model, shape):
    runs = tmp_path / "runs"
    args = ["experiment=quick", f"runs_dir={runs}", f"vision_model={vision_model}", "act.frame_stack=3",
            f"act.see_run={quick_run.see}", "vec_env=dummy", "+env.kwargs.max_episode_steps=30", "name=stacked",
            "act.total_timesteps=256", "act.eval_every=256", "act.eval_episodes=1", "agent.hyperparameters.n_steps=64",
            "agent.hyperparameters.batch_size=64", "env.targets=[heldout_pairing]"]
    check_ok(run_cli("act", *args, cwd=tmp_path, timeout=300))
    manifest = read_json(runs / "stacked" / "act" / "manifest.json")
    assert manifest["frame_stack"] == 3 and manifest["observation_shape"] == shape
    check_ok(run_cli("transfer", *args, cwd=tmp_path, timeout=300))
    assert read_json(runs / "stacked" / "transfer" / "summary.json")["target"]["episodes"] == 2
    check_ok(run_cli("video", "stacked", *args[:2], "+env.kwargs.max_episode_steps=30", cwd=tmp_path, timeout=300))
    assert list((runs / "stacked" / "video").glob("*.gif"))


def test_stacking_is_refused_for_the_fine_tuned_encoder(tmp_path):
    proc = run_cli("act", "experiment=quick", f"runs_dir={tmp_path}", "vision_model=darla_ft", "act.frame_stack=2",
                   cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "act.frame_stack=2 is not allowed with vision_model.policy_input=fine_tune" in proc.stderr
