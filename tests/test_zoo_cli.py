"""Every model of the zoo trains through `python -m darla.stage see` and is diagnosed on ground truth.

Runs the real CLI on procedural dSprites (experiment=quick_dsprites: a few training steps, a coarse
factor grid, small metric samples), so each model goes through the shared training loop (or its
own training step), the diagnostics and every disentanglement metric in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import REPO, check_ok, output, run_cli, snapshot
from darla.artifacts import read_json
from darla.leaderboard import headline_scores

# Every vision model with a see stage: not the baselines that read pixels or the env's state (model: null),
# nor darla_ft, which is beta_vae_dae's config with another policy input, nor icf, which learns by acting
# in vision domains that dSprites does not have (tests/test_icf.py runs it on CollectGoodObjects).
MODELS = sorted(
    p.stem
    for p in (REPO / "configs" / "vision_model").glob("*.yaml")
    if yaml.safe_load(p.read_text()).get("model", "") is not None and p.stem not in ("darla_ft", "icf")
)
DETERMINISTIC = {"dae", "random_cnn", "disbm"}  # no posterior variance: Chen's sampled MIG does not apply
ENCODER_ONLY = {"random_cnn"}


METRICS = {p.stem for p in (REPO / "configs" / "metric").glob("*.yaml")}  # darla.yaml selects all of them


def see_quick_dsprites(model: str, runs: Path, *extra: str):
    return run_cli(
        "see",
        "experiment=quick_dsprites",
        f"vision_model={model}",
        f"runs_dir={runs}",
        *extra,
        cwd=runs.parent,
        timeout=600,
    )


def test_the_zoo_is_every_model_the_issue_names():
    assert {
        "vae",
        "beta_vae",
        "dae",
        "beta_vae_dae",
        "annealed_vae",
        "beta_tcvae",
        "factor_vae",
        "dip_vae",
        "infogan",
        "dcign",
        "disbm",
        "random_cnn",
    } <= set(MODELS)


@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_through_see_and_is_diagnosed(model, tmp_path):
    runs = tmp_path / "runs"
    check_ok(see_quick_dsprites(model, runs))
    see = runs / f"quick_dsprites_{model}" / "see"
    manifest = read_json(see / "manifest.json")
    assert manifest["input_shape"] == [1, 64, 64] and manifest["env_name"] == "dsprites"
    assert not (see / "frames.npz").exists()  # dSprites is drawn batch by batch, never stored
    if model in ("dcign", "disbm"):
        assert manifest["vision_model"]["model"]["num_factors"] == 5  # taken from the dataset

    metrics = read_json(see / "metrics.json")
    assert metrics["factor_names"] == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert metrics["factor_sizes"] == [3, 6, 5, 4, 4]
    assert set(metrics["metrics"]) == METRICS == set(metrics["headline"])
    assert metrics["headline"]["dci"] == {
        "disentanglement": "DCI D",
        "completeness": "DCI C",
        "informativeness_test": "DCI I",
    }
    for name, scores in metrics["metrics"].items():
        if name == "sampled_mig" and model in DETERMINISTIC:
            assert "skipped" in scores
            continue
        assert scores["seconds"] >= 0 and all(v == v for v in scores.values()), (name, scores)  # no NaN

    pictures = {"kl_per_dim.png", "factor_response.png"}
    if model not in ENCODER_ONLY:
        pictures |= {"reconstructions.png", "traversals.png", "traversals.gif"}
    assert pictures <= {p.name for p in see.iterdir()}
    if model in ENCODER_ONLY:
        assert not (see / "reconstructions.png").exists()


def test_see_trains_in_bf16_on_request(tmp_path):
    """see.precision=bf16: the DAE and the β-VAE_DAE train under bfloat16 autocast; the setting is part of the run's."""
    runs = tmp_path / "runs"
    check_ok(see_quick_dsprites("beta_vae_dae", runs, "see.precision=bf16"))
    see = runs / "quick_dsprites_beta_vae_dae" / "see"
    assert read_json(see / "config.json")["see"]["precision"] == "bf16"  # the settings the run was made with
    assert read_json(see / "metrics.json")["metrics"]["mig"]["mig"] >= 0
    again = run_cli("see", "experiment=quick_dsprites", "vision_model=beta_vae_dae", f"runs_dir={runs}", cwd=tmp_path)
    assert again.returncode != 0 and "(see differ)" in again.stderr  # an fp32 run is another run


def test_diagnose_gives_again_the_numbers_of_the_see_run_it_diagnoses(tmp_path):
    """diagnose draws with the see run's own seed, not its own config's default (same metric settings)."""
    runs = tmp_path / "runs"
    check_ok(see_quick_dsprites("beta_vae", runs, "seed=3", "name=seeded"))
    see = runs / "seeded" / "see"
    scores = lambda: {  # noqa: E731
        metric: {k: v for k, v in values.items() if k != "seconds"}
        for metric, values in json.loads((see / "metrics.json").read_text())["metrics"].items()
    }
    before, latents = scores(), (see / "latents.json").read_text()  # KL per latent of a seeded sample
    check_ok(run_cli("diagnose", str(see), "experiment=quick_dsprites", f"runs_dir={runs}", cwd=tmp_path))
    assert scores() == before and (see / "latents.json").read_text() == latents


def test_diagnose_rewrites_metrics_of_a_finished_run_and_keeps_its_weights(tmp_path):
    runs = tmp_path / "runs"
    check_ok(see_quick_dsprites("beta_vae", runs))
    see = runs / "quick_dsprites_beta_vae" / "see"
    weights = {k: v for k, v in snapshot(see).items() if k.endswith(".safetensors") or k == "manifest.json"}

    # The run is positional; other overrides follow it. Only the MIG is asked for this time.
    others = ["metric=[mig]"]
    proc = check_ok(
        run_cli("diagnose", str(see), *others, "metrics.compute.mig.num_bins=10", f"runs_dir={runs}", cwd=tmp_path)
    )
    assert "[diagnose] mig:" in output(proc)
    metrics = json.loads((see / "metrics.json").read_text())["metrics"]
    assert list(metrics) == ["mig"]
    assert {k: v for k, v in snapshot(see).items() if k in weights} == weights

    # A metric of one's own: one function and one YAML, found through hydra.searchpath; no registry.
    (tmp_path / "my_metrics.py").write_text(
        "import numpy as np\n\n"
        "def compute_code_spread(codes, rng, num_train=100):\n"
        "    rows = rng.choice(len(codes.mean), num_train)\n"
        "    return {'spread': float(np.std(codes.mean[rows], axis=0).mean())}\n"
    )
    (tmp_path / "my_configs" / "metric").mkdir(parents=True)
    (tmp_path / "my_configs" / "metric" / "code_spread.yaml").write_text(
        "# @package metrics.compute.code_spread\n_target_: my_metrics.compute_code_spread\n"
        "headline: {spread: Spread}\nnum_train: 200\n"
    )
    args = ("diagnose", str(see), "metric=[mig,code_spread]", f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]")
    check_ok(run_cli(*args, f"runs_dir={runs}", cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}))
    report = json.loads((see / "metrics.json").read_text())
    assert list(report["metrics"]) == ["mig", "code_spread"] and report["metrics"]["code_spread"]["spread"] > 0
    assert report["headline"]["code_spread"] == {"spread": "Spread"}
    assert headline_scores(report) == {
        "MIG": report["metrics"]["mig"]["mig"],
        "Spread": report["metrics"]["code_spread"]["spread"],
    }


def test_act_refuses_a_vision_only_dataset(tmp_path):
    proc = run_cli("act", "env=dsprites", f"runs_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "env 'dsprites' has no source domains: it is a vision-only dataset" in output(proc)


def test_dcign_trains_on_collect_good_objects_sweeps_and_see_scores_it_on_the_envs_factors(tmp_path):
    """On the env itself: DC-IGN's sweeps come from CollectGoodObjects' factor dataset (never the
    held-out pairing), and see computes the metrics on the env's own factor grid."""
    runs = tmp_path / "runs"
    grid = [
        "env.factor_dataset.room_styles=[default,alternative]",
        "env.factor_dataset.num_x=2",
        "env.factor_dataset.num_z=2",
        "env.factor_dataset.num_headings=3",
        "env.factor_dataset.num_layouts=2",
    ]
    check_ok(
        run_cli(
            "see",
            "experiment=quick",
            "vision_model=dcign",
            "vision_model.train.steps=4",
            "vision_model.train.batch_size=8",
            "see.frames=100",
            *grid,
            "metric=[mig,factor_vae_score]",
            "metrics.compute={mig:{num_train:200},factor_vae_score:{num_train:50,num_eval:20,"
            "num_variance_estimate:100,batch_size:8}}",
            f"runs_dir={runs}",
            cwd=tmp_path,
            timeout=600,
        )
    )
    see = runs / "quick_dcign" / "see"
    manifest = read_json(see / "manifest.json")
    assert manifest["vision_model"]["model"]["num_factors"] == 6
    metrics = read_json(see / "metrics.json")
    assert metrics["factor_names"] == ["object_set", "room_style", "agent_x", "agent_z", "agent_dir", "layout"]
    assert metrics["factor_sizes"] == [2, 2, 2, 2, 3, 2]
    assert set(metrics["metrics"]) == {"mig", "factor_vae_score"}
    assert (see / "factor_response.png").exists()
