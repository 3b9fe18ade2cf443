"""The whole pipeline through the command line, at the quick preset's budget.

Real Miniworld frames, real vision training, real SB3 agents, real files: see → act → transfer,
a second run that has nothing to do, DQN on the same see run, the pixel baseline, and
summaries rebuilt from the raw episodes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import QUICK_NAME, check_ok, output, run_cli, snapshot
from darla.artifacts import content_hash, load_state, read_json
from darla.transfer import summarize

SOURCE = ["hat_can_default", "cake_balloon_default", "cake_balloon_alternative"]
TARGETS = ["heldout_pairing", "cam_fov_40", "distractors"]
QUICK_EPISODES = 2  # experiment=quick: transfer.episodes
TRANSFER_SEED = 100_000  # configs/darla.yaml: transfer.seed


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_transfer_episodes(transfer_dir, domains, episodes, players=("policy", "random")):
    """One line per episode per domain per player, with the seeds every domain shares."""
    lines = read_jsonl(transfer_dir / "episodes.jsonl")
    assert len(lines) == len(domains) * len(players) * episodes
    for domain, role in domains:
        for player in players:
            rows = [r for r in lines if r["domain"] == domain and r["policy"] == player]
            assert [r["seed"] for r in rows] == [TRANSFER_SEED + i for i in range(episodes)], (domain, player)
            assert all(r["role"] == role for r in rows)
            assert all(1 <= r["length"] <= 150 and float(r["return"]).is_integer() for r in rows)
            assert all(-3 <= r["return"] <= 3 for r in rows)  # 3 good (+1) and 3 bad (−1) objects
    return lines


def test_quick_pipeline_writes_every_artifact(quick_run):
    out = output(quick_run.proc)
    assert "[see] done" in out and "[act] done" in out and "[transfer] done" in out

    # see: frames with their ground truth, the DAE and the vision model, diagnostics, manifest.
    see = quick_run.see
    for name in (
        "frames.npz",
        "dae.safetensors",
        "vision_model.safetensors",
        "reconstructions.png",
        "traversals.png",
        "traversals.gif",
        "manifest.json",
    ):
        assert (see / name).is_file() and (see / name).stat().st_size > 0, name
    assert (see / "reconstructions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (see / "traversals.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (see / "traversals.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    with np.load(see / "frames.npz", allow_pickle=False) as data:
        frames = data["frames"]
        assert frames.shape == (600, 64, 64, 3) and frames.dtype == np.uint8  # experiment=quick: see.frames
        assert len(data["domain"]) == 600
        # The held-out pairing (hat/can in the alternative room) never reaches the vision data.
        heldout = (data["factor_object_set"] == 0) & (data["factor_room_style"] == 1)
        assert not heldout.any()
        assert len(np.unique(data["domain"])) > 3  # a random policy over ten vision domains
        # Each frame's task state and episode, for the task probe (held-out episodes are scored).
        assert data["state"].shape == (600, 29) and data["episode"].shape == (600,)
        assert len(np.unique(data["episode"])) >= 5
    # The task probe: CollectGoodObjects' quantities, scored on held-out episodes and each target;
    # reconstruction error inside the task objects against the background.
    report = read_json(see / "metrics.json")
    probe = report["task_probe"]
    assert set(probe["quantities"]) == {
        "agent_x",
        "agent_z",
        "heading_cos",
        "heading_sin",
        "good_in_view",
        "nearest_kind",
        "nearest_bearing",
        "nearest_distance",
    }
    by_domain = {s for s in probe["summary"] if s.startswith("heldout_episodes/")}  # each vision domain's too
    assert set(probe["summary"]) - by_domain == {"heldout_episodes", "heldout_pairing", "cam_fov_40", "distractors"}
    vision = list(read_json(see / "manifest.json")["vision_domains"])
    assert set(probe["heldout_by_domain"]) == {s.split("/")[1] for s in by_domain} <= set(vision)
    assert by_domain  # (a quick run holds out few episodes: not every domain has one)
    source = {"hat_can_default", "cake_balloon_default", "cake_balloon_alternative"}  # the rooms the policy learns in
    in_source = [v for d, v in probe["heldout_by_domain"].items() if d in source and v is not None]
    assert probe["source"] == (pytest.approx(np.mean(in_source)) if in_source else None)
    assert set(probe["groups"]) == {"heldout", "ood2"}  # the groups of the three targets played
    assert all(v is None or 0 <= v <= 1 for v in [probe["heldout"], probe["targets"], *probe["summary"].values()])
    for name in ("heldout_pairing", "cam_fov_40", "distractors"):  # a file per target domain (and settings)
        paths = list((see / "probe_frames").glob(f"{name}-*.npz"))
        assert paths, name
        for path in paths:
            with np.load(path, allow_pickle=False) as data:
                assert data["frames"].shape == (200, 64, 64, 3) and data["state"].shape == (200, 29)
    objects = report["object_reconstruction"]
    assert objects["frames"] == 256 and 0 < objects["object_fraction"] < 0.5 and objects["object_mse"] > 0
    assert (see / "object_reconstructions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = read_json(see / "manifest.json")
    assert manifest["stage"] == "see"
    assert manifest["input_shape"] == [3, 64, 64] and manifest["latent_dim"] == 32
    assert manifest["content_hash"] == content_hash(manifest, see)  # its weights and the manifest itself
    assert manifest["vision_model"]["name"] == "beta_vae_dae"
    assert manifest["vision_model"]["train"]["steps"] == 30 and manifest["pretrained"]["dae"]["train"]["steps"] == 20
    for label, steps in (("dae", 20), ("vision_model", 30)):
        assert load_state(see / "checkpoints" / f"{label}.safetensors")["step"] == steps

    # act: the policy, its per-domain evaluation curves and a manifest pointing at the see run.
    act = quick_run.act
    for name in ("policy.safetensors", "eval.jsonl", "manifest.json"):
        assert (act / name).is_file(), name
    act_manifest = read_json(act / "manifest.json")
    assert act_manifest["see_hash"] == manifest["content_hash"]
    assert act_manifest["see_dir"] == str(see)
    assert act_manifest["policy"] == "MlpPolicy" and act_manifest["observation_shape"] == [32]
    assert act_manifest["timesteps"] >= 1024
    assert act_manifest["content_hash"] == content_hash(act_manifest, act)
    assert act_manifest["env_id"] == "darla/CollectGoodObjects-v0" and act_manifest["source_domains"] == SOURCE
    assert act_manifest["action_space"] == {"type": "Discrete", "shape": [], "n": 3}
    curves = read_jsonl(act / "eval.jsonl")
    assert {c["domain"] for c in curves} == set(SOURCE)
    assert sorted({c["timesteps"] for c in curves}) == [512, 1024]  # act.eval_every 512 of 1024
    assert all(c["episodes"] == 2 for c in curves)

    # transfer: raw episodes, summary and report.
    transfer = quick_run.transfer
    roles = [(d, "source") for d in SOURCE] + [(d, "target") for d in TARGETS]
    check_transfer_episodes(transfer, roles, QUICK_EPISODES)
    summary = read_json(transfer / "summary.json")
    assert list(summary["domains"]) == SOURCE + TARGETS
    assert summary["source"]["episodes"] == len(SOURCE) * QUICK_EPISODES
    assert summary["target"]["episodes"] == len(TARGETS) * QUICK_EPISODES
    report = (transfer / "report.md").read_text()
    assert all(f"| {d} |" in report for d in SOURCE + TARGETS)
    transfer_manifest = read_json(transfer / "manifest.json")
    assert transfer_manifest["content_hash"] == content_hash(transfer_manifest, transfer)
    assert transfer_manifest["act_hash"] == act_manifest["content_hash"]


def test_second_run_has_nothing_to_do_and_changes_no_file(quick_run):
    stages = {stage: snapshot(quick_run.run / stage) for stage in ("see", "act", "transfer")}
    proc = check_ok(run_cli(*quick_run.args, cwd=quick_run.root, timeout=300))
    out = output(proc)
    for stage in ("see", "act", "transfer"):
        assert f"[{stage}] {quick_run.run / stage} is finished with these settings; nothing to do" in out
        assert snapshot(quick_run.run / stage) == stages[stage], f"{stage} files changed"
    assert "collected" not in out and "resuming" not in out


def test_summarize_rebuilds_summary_and_report_from_episodes(quick_run, tmp_path):
    import shutil

    out = tmp_path / "transfer"
    shutil.copytree(quick_run.transfer, out)
    summary_bytes, report_bytes = (out / "summary.json").read_bytes(), (out / "report.md").read_bytes()
    (out / "summary.json").unlink()
    (out / "report.md").unlink()
    summary = summarize(out, read_json(quick_run.act / "manifest.json"))
    assert (out / "summary.json").read_bytes() == summary_bytes
    assert (out / "report.md").read_bytes() == report_bytes
    # And the summary really is derived from the episodes.
    lines = read_jsonl(out / "episodes.jsonl")
    for name, entry in summary["domains"].items():
        returns = [r["return"] for r in lines if r["domain"] == name and r["policy"] == "policy"]
        randoms = [r["return"] for r in lines if r["domain"] == name and r["policy"] == "random"]
        assert entry["policy"]["mean"] == pytest.approx(np.mean(returns))
        assert entry["random"]["mean"] == pytest.approx(np.mean(randoms))
    targets = [r["return"] for r in lines if r["role"] == "target" and r["policy"] == "policy"]
    assert summary["target"]["mean"] == pytest.approx(np.mean(targets))


def test_dqn_on_the_same_see_run(quick_run):
    """A DQN agent on the quick run's encoder, under its own name (the quick act dir holds the PPO run)."""
    see_before = snapshot(quick_run.see)
    common = (
        "experiment=quick",
        f"runs_dir={quick_run.runs}",
        "name=quick_dqn",
        f"act.see_run={QUICK_NAME}",
        "agent=dqn",
        "vec_env=dummy",
    )
    proc = check_ok(
        run_cli(
            "act",
            *common,
            "agent.hyperparameters.learning_starts=256",
            "agent.hyperparameters.buffer_size=4096",
            "agent.hyperparameters.target_update_interval=256",
            cwd=quick_run.root,
            timeout=300,
        )
    )
    act = quick_run.runs / "quick_dqn" / "act"
    manifest = read_json(act / "manifest.json")
    assert manifest["agent"]["name"] == "dqn" and manifest["agent"]["algorithm"] == "DQN"
    assert manifest["see_dir"] == str(quick_run.see)
    assert manifest["see_hash"] == read_json(quick_run.see / "manifest.json")["content_hash"]
    assert manifest["timesteps"] >= 1024 and manifest["policy"] == "MlpPolicy"
    assert (act / "policy.safetensors").is_file() and (act / "checkpoint" / "replay_buffer.npz").is_file()
    assert sorted({c["timesteps"] for c in read_jsonl(act / "eval.jsonl")}) == [512, 1024]
    assert "[act] done" in output(proc)
    assert snapshot(quick_run.see) == see_before  # the see run was only read

    # The DQN policy is rebuilt from its manifest and evaluated unchanged.
    check_ok(
        run_cli(
            "transfer", *common, "env.targets=[heldout_pairing]", "transfer.episodes=1", cwd=quick_run.root, timeout=300
        )
    )
    roles = [(d, "source") for d in SOURCE] + [("heldout_pairing", "target")]
    check_transfer_episodes(quick_run.runs / "quick_dqn" / "transfer", roles, 1)


def test_pixels_baseline_act_and_transfer(tmp_path):
    """vision_model=pixels has no see stage: the agent learns from frames with a CNN policy."""
    runs = tmp_path / "runs"
    proc = check_ok(
        run_cli(
            "all",
            "experiment=quick",
            "vision_model=pixels",
            f"runs_dir={runs}",
            "vec_env=dummy",
            "env.targets=[heldout_pairing]",
            cwd=tmp_path,
            timeout=600,
        )
    )
    run = runs / "quick_pixels"
    assert not (run / "see").exists()
    manifest = read_json(run / "act" / "manifest.json")
    assert manifest["policy"] == "CnnPolicy" and manifest["see_dir"] is None and manifest["see_hash"] is None
    assert manifest["observation_shape"] == [64, 64, 3]
    assert manifest["timesteps"] >= 1024
    roles = [(d, "source") for d in SOURCE] + [("heldout_pairing", "target")]
    check_transfer_episodes(run / "transfer", roles, QUICK_EPISODES)
    assert read_json(run / "transfer" / "manifest.json")["vision_model"] == "pixels"
    assert "[transfer] done" in output(proc)
