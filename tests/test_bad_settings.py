"""Every bad setting is refused before any work: exit 2, one line naming the key, no traceback,
and the finished run it was aimed at (with overwrite=true) left exactly as it was."""

from __future__ import annotations

import pytest

from conftest import QUICK_NAME, REPO, compose_cfg, copy_run, run_cli, snapshot

# (stage, overrides, the key the message must name)
BAD = [
    ("see", ["vision_model.train.steps=-1"], "vision_model.train.steps"),
    ("see", ["vision_model.train.steps=0"], "vision_model.train.steps"),
    ("see", ["vision_model.model.beta=-1"], "vision_model.model.beta"),
    ("see", ["vision_model.model.beta=nan"], "vision_model.model.beta"),
    ("see", ["vision_model.model.beta=inf"], "vision_model.model.beta"),
    ("see", ["see.frames=0"], "see.frames"),
    ("see", ["see.frames=-5"], "see.frames"),
    ("see", ["see.frames=abc"], "see.frames"),
    ("see", ["see.frames=1.5"], "see.frames"),
    ("see", ["see.checkpoint_every=0"], "see.checkpoint_every"),
    ("see", ["see.log_every=-1"], "see.log_every"),
    ("see", ["see.precision=fp16"], "see.precision"),
    ("see", ["see.domain_weights={heldout_pairing: 3}"], "see.domain_weights"),  # a target: not zero-shot
    ("see", ["see.domain_weights={hat_can_default: 0}"], "see.domain_weights"),
    ("see", ["see.domain_weights=3"], "see.domain_weights"),
    ("see", ["vision_model.model.latent_dim=0"], "vision_model.model.latent_dim"),
    ("see", ["vision_model.train.batch_size=0"], "vision_model.train.batch_size"),
    ("see", ["vision_model.train.lr=0"], "vision_model.train.lr"),
    ("see", ["vision_model.model.dae_layer=middle"], "vision_model.model.dae_layer"),
    ("see", ["dae.train.steps=0"], "dae.train.steps"),
    ("see", ["dae.model.latent_dim=-3"], "dae.model.latent_dim"),
    ("see", ["dae.model.mask_min_frac=0.6"], "dae.model.mask_min_frac"),
    ("see", ["dae.model.mask_max_frac=1.5"], "dae.model.mask_max_frac"),
    (
        "see",
        ["vision_model=beta_vae", "vision_model.model.reconstruction=laplace"],
        "vision_model.model.reconstruction",
    ),
    ("see", ["vision_model=beta_tcvae", "vision_model.model.estimator=xyz"], "vision_model.model.estimator"),
    ("see", ["vision_model=factor_vae", "vision_model.model.gamma=-35"], "vision_model.model.gamma"),
    ("see", ["metric=[mig]", "metrics.compute.mig.num_bins=0"], "metrics.compute.mig.num_bins"),
    ("see", ["metric=[dci]", "metrics.compute.dci.backend=gpu"], "metrics.compute.dci.backend"),
    ("see", ["experiment=quick", "+metrics.compute={mig: {num_train: 100}}"], "metrics.compute.mig"),
    ("see", ["seed=-1"], "seed"),
    ("see", ["num_envs=0"], "num_envs"),
    ("see", ["num_envs=-1"], "num_envs"),
    ("see", ["vec_env=threads"], "vec_env"),
    ("see", ["device=gpu"], "device"),
    ("see", ["name=../escaped"], "name"),
    ("see", ["overwrite=maybe"], "overwrite"),
    ("see", ["trusted_modules=lab_models"], "trusted_modules"),
    ("act", ["act.total_timesteps=0"], "act.total_timesteps"),
    ("act", ["act.total_timesteps=-100"], "act.total_timesteps"),
    ("act", ["act.eval_every=0"], "act.eval_every"),
    ("act", ["act.eval_every=5000"], "act.eval_every"),  # more than act.total_timesteps=1024
    ("act", ["act.eval_episodes=0"], "act.eval_episodes"),
    ("act", ["act.deterministic=sometimes"], "act.deterministic"),
    ("act", ["agent.hyperparameters.learning_rate=-1"], "agent.hyperparameters.learning_rate"),
    ("act", ["agent.hyperparameters.gamma=1.5"], "agent.hyperparameters.gamma"),
    ("act", ["agent.hyperparameters.n_steps=0"], "agent.hyperparameters.n_steps"),
    ("act", ["agent.hyperparameters.ent_coef=nan"], "agent.hyperparameters.ent_coef"),
    ("act", ["agent.algorithm=A2C"], "agent.algorithm"),
    (
        "act",
        ["agent=dqn", "agent.hyperparameters.exploration_fraction=2"],
        "agent.hyperparameters.exploration_fraction",
    ),
    ("act", ["agent=dqn", "agent.hyperparameters.buffer_size=0"], "agent.hyperparameters.buffer_size"),
    ("act", ["policy_threads=0"], "policy_threads"),
    ("transfer", ["transfer.episodes=0"], "transfer.episodes"),
    ("transfer", ["transfer.episodes=-3"], "transfer.episodes"),
    ("transfer", ["transfer.seed=-1"], "transfer.seed"),
    ("transfer", ["transfer.random_policy=perhaps"], "transfer.random_policy"),
    ("all", ["act.eval_every=0", "see.frames=0"], "see.frames"),
    ("video", ["video.format=avi"], "video.format"),
    ("video", ["video.fps=0"], "video.fps"),
    ("diagnose", ["metrics.encode_batch_size=0"], "metrics.encode_batch_size"),
    ("compare", ["compare.seeds=[]"], "compare.seeds"),
]


@pytest.fixture(scope="module")
def finished(quick_run, tmp_path_factory):
    """A copy of the finished quick run (see, act, transfer), which every bad command is aimed at."""
    runs = tmp_path_factory.mktemp("bad_settings") / "runs"
    copy_run(quick_run, runs, QUICK_NAME, stages=("see", "act", "transfer"))
    return runs


@pytest.mark.parametrize("stage, overrides, key", BAD, ids=[" ".join(o) for _, o, _ in BAD])
def test_a_bad_setting_is_refused_in_one_line_and_nothing_is_lost(finished, tmp_path, stage, overrides, key):
    before = snapshot(finished)
    extra = [str(finished / QUICK_NAME / "see")] if stage == "diagnose" else []
    proc = run_cli(
        stage,
        *extra,
        "experiment=quick",
        f"runs_dir={finished}",
        "overwrite=true",
        "vec_env=dummy",
        *overrides,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"darla {stage}: error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    value = dict(o.split("=", 1) for o in overrides).get(key)  # None where the key sits inside a group value
    assert f"{key}=" in lines[0] and "is not allowed: expected" in lines[0], lines[0]
    if value is not None:
        assert value.strip("'") in lines[0], lines[0]
    assert snapshot(finished) == before


def test_a_traceback_is_shown_on_request(finished, tmp_path):
    proc = run_cli(
        "see",
        "experiment=quick",
        f"runs_dir={finished}",
        "see.frames=0",
        cwd=tmp_path,
        timeout=120,
        env={"DARLA_TRACEBACK": "1"},
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "see.frames=0 is not allowed" in proc.stderr


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml")))
def test_every_experiment_preset_composes_and_passes_the_settings_rules(experiment):
    from darla.settings import problems

    cfg = compose_cfg("darla", [f"experiment={experiment}", "seed=3"])
    assert problems(cfg) == [], problems(cfg)
    if experiment.startswith("ablation_"):  # one run directory per variant and seed
        assert cfg.name == f"ablations/{experiment.removeprefix('ablation_')}/seed3"
