"""Comparing encoders: the compare stage end to end, the leaderboard's statistics against an
independent computation from the raw episodes, and the baselines (DARLA_FT, oracle)."""

from __future__ import annotations

import csv
import json
import re
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_SWEEP, check_ok, output, reseal, run_cli, snapshot
from darla.artifacts import read_json
from darla.evaluation import interquartile_mean, rank_correlation, stratified_bootstrap_ci
from darla.leaderboard import bootstrap_rng, build_leaderboard, rho_interval

TARGETS = ["heldout_pairing", "sky_red"]
TINY = [
    "experiment=quick",
    "num_envs=2",
    "act.total_timesteps=512",
    "act.eval_every=512",
    f"env.targets=[{','.join(TARGETS)}]",
    "transfer.random_policy=false",
]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def per_domain_means(transfer_dir):
    rows = [r for r in read_jsonl(transfer_dir / "episodes.jsonl") if r["policy"] == "policy"]
    domains = list(dict.fromkeys(r["domain"] for r in rows))
    return {d: np.mean([r["return"] for r in rows if r["domain"] == d]) for d in domains}, {
        r["domain"]: r["role"] for r in rows
    }


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """``compare`` over two cheap vision models x two seeds at a tiny budget, run to the end."""
    root = tmp_path_factory.mktemp("compare")
    args = (
        "compare",
        f"runs_dir={root / 'runs'}",
        "compare.name=tiny",
        "compare.vision_models=[oracle,random_cnn]",
        "compare.seeds=[0,1]",
        *TINY,
    )
    proc = check_ok(run_cli(*args, cwd=root, timeout=1200))
    return root, root / "runs" / "tiny", args, proc


def test_compare_runs_every_job_and_writes_the_leaderboard(comparison):
    root, tiny, _, proc = comparison
    for model in ("oracle", "random_cnn"):
        for seed in (0, 1):
            run = tiny / model / f"seed{seed}"
            assert (run / "transfer" / "manifest.json").exists(), run
            assert read_json(run / "act" / "config.json")["seed"] == seed
    assert not (tiny / "oracle" / "seed0" / "see").exists()  # the oracle has no vision stage
    assert (tiny / "random_cnn" / "seed1" / "see" / "manifest.json").exists()
    for name in ("leaderboard.md", "leaderboard.csv", "runs.csv", "returns_per_domain.png", "training_curves.png"):
        assert (tiny / name).stat().st_size > 0, name
    assert "| oracle | 2 |" in (tiny / "leaderboard.md").read_text() and "Leaderboard: tiny" in output(proc)


def test_leaderboard_numbers_follow_from_the_raw_episodes(comparison):
    _, tiny, _, _ = comparison
    rows = {r["vision_model"]: r for r in csv.DictReader((tiny / "leaderboard.csv").open())}
    for model in ("oracle", "random_cnn"):
        tables = {"source": [], "target": [], "heldout": []}
        ratios, heldout_ratios = [], []
        for seed in (0, 1):
            means, roles = per_domain_means(tiny / model / f"seed{seed}" / "transfer")
            source = [means[d] for d in means if roles[d] == "source"]
            target = [means[d] for d in means if roles[d] == "target"]
            tables["source"].append(source)
            tables["target"].append(target)
            tables["heldout"].append([means["heldout_pairing"]])
            ratios.append(np.mean(target) / np.mean(source) if np.mean(source) else np.nan)
            heldout_ratios.append(means["heldout_pairing"] / np.mean(source) if np.mean(source) else np.nan)
        row = rows[model]
        assert int(row["seeds"]) == 2
        for column, table in tables.items():
            table = np.array(table)
            assert float(row[f"{column}_iqm"]) == pytest.approx(interquartile_mean(table.ravel()))
            assert float(row[f"{column}_mean"]) == pytest.approx(table.mean())
            assert float(row[f"{column}_std"]) == pytest.approx(table.mean(axis=1).std(ddof=1))
            assert (
                table.min() - 1e-9
                <= float(row[f"{column}_ci_low"])
                <= float(row[f"{column}_ci_high"])
                <= table.max() + 1e-9
            )
        if np.all(np.isfinite(ratios)):
            assert float(row["transfer_ratio_iqm"]) == pytest.approx(interquartile_mean(ratios))
            # and per target group: the group's return over the source's, per seed
            assert float(row["heldout_ratio_iqm"]) == pytest.approx(interquartile_mean(heldout_ratios))


def test_an_interrupted_comparison_reruns_nothing_and_the_leaderboard_is_rebuilt_the_same(comparison):
    root, tiny, args, _ = comparison
    leaderboard = (tiny / "leaderboard.csv").read_text()
    runs_before = {
        k: v for k, v in snapshot(tiny).items() if "/seed" in k and "/.hydra/" not in k and not k.endswith(".log")
    }
    # Remove one finished run's transfer: re-running compare redoes exactly that stage.
    redo = tiny / "random_cnn" / "seed1" / "transfer"
    shutil.rmtree(redo)
    proc = check_ok(run_cli(*args, cwd=root, timeout=1200))
    runs_after = {k: v for k, v in snapshot(tiny).items() if k in runs_before}
    changed = sorted(k for k in runs_before if runs_before[k] != runs_after.get(k))
    assert changed and all(k.startswith("random_cnn/seed1/transfer/") for k in changed), changed
    assert output(proc).count("finished with these settings; nothing to do") >= 3 * 3  # see/act/transfer skipped
    assert (tiny / "leaderboard.csv").read_text() == leaderboard  # same episodes (fixed seeds), same numbers
    check_ok(run_cli("leaderboard", str(tiny), cwd=root))
    assert (tiny / "leaderboard.csv").read_text() == leaderboard


def test_a_failed_job_leaves_the_others_and_the_leaderboard_and_compare_names_it(tmp_path):
    """Seed 1's directory holds a run made with other settings, so that job is refused; seed 0 runs,
    the callback makes the leaderboard of it, and compare exits with an error naming seed 1."""
    runs = tmp_path / "runs"
    args = ("compare", f"runs_dir={runs}", "compare.name=fail", "compare.vision_models=[random_cnn]", *TINY_SWEEP)
    check_ok(run_cli(*args, "compare.seeds=[1]", cwd=tmp_path, timeout=600))
    proc = run_cli(*args, "compare.seeds=[0,1]", "see.frames=120", cwd=tmp_path, timeout=600)
    text = output(proc)
    assert proc.returncode != 0, text
    assert "already holds a run with different settings" in text
    assert "1 jobs did not finish (random_cnn seed 1)" in text and "Leaderboard: fail" in text
    rows = (runs / "fail" / "runs.csv").read_text().splitlines()[1:]
    assert [row.split(",")[:2] for row in rows] == [["random_cnn", "0"], ["random_cnn", "1"]]
    assert read_json(runs / "fail" / "random_cnn" / "seed0" / "see" / "config.json")["see"]["frames"] == 120


def test_leaderboard_refuses_runs_on_different_domains_and_an_empty_directory(comparison, tmp_path):
    import shutil

    _, tiny, _, _ = comparison
    shutil.copytree(tiny / "oracle", tmp_path / "mixed" / "oracle")
    episodes = tmp_path / "mixed" / "oracle" / "seed1" / "transfer" / "episodes.jsonl"
    lines = [r for r in read_jsonl(episodes) if r["domain"] != "sky_red"]
    episodes.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(ValueError, match=re.escape(str(episodes)) + ".*do not match the content hash"):
        build_leaderboard(tmp_path / "mixed")
    reseal(episodes.parent)  # as if the run had been made so
    with pytest.raises(ValueError, match="evaluated on other domains"):
        build_leaderboard(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    proc = run_cli("leaderboard", str(tmp_path / "empty"), cwd=tmp_path)
    assert proc.returncode != 0 and "no finished runs" in output(proc)


def test_a_ledger_gives_the_tables_and_correlations_of_its_runs_and_a_bad_ledger_is_refused(comparison, tmp_path):
    """``leaderboard <runs.csv>`` gives the table and ρ the leaderboard gave from the run directories themselves."""
    _, tiny, _, _ = comparison
    assert (tiny / "correlations.json").exists()
    shutil.copy(tiny / "runs.csv", tmp_path / "runs.csv")
    proc = check_ok(run_cli("leaderboard", str(tmp_path / "runs.csv"), cwd=tmp_path))
    assert (tmp_path / "correlations.json").read_text() == (tiny / "correlations.json").read_text()
    assert (tmp_path / "disentanglement_vs_transfer.png").stat().st_size > 0
    assert "| Task probe |" in output(proc)
    # ... and the same returns table: IQM, interval, mean and std of every column, per model
    numbers = lambda path: [  # noqa: E731
        {k: v for k, v in row.items() if k.endswith(("_iqm", "_ci_low", "_ci_high", "_mean", "_std"))}
        for row in csv.DictReader(path.open())
    ]
    assert numbers(tmp_path / "leaderboard.csv") == numbers(tiny / "leaderboard.csv") != []
    assert {"heldout_iqm", "ood1_iqm"} <= set(numbers(tmp_path / "leaderboard.csv")[0])
    assert (tmp_path / "returns_per_domain.png").stat().st_size > 0
    assert "| oracle | 2 |" in (tmp_path / "leaderboard.md").read_text()
    (tmp_path / "bad.csv").write_text("vision_model,seed\noracle,0\n")
    proc = run_cli("leaderboard", str(tmp_path / "bad.csv"), cwd=tmp_path)
    assert proc.returncode != 0 and "bad.csv: not a runs.csv: no column source, target, transfer_ratio" in output(proc)
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    rows[0]["source"] = "2.5"  # a row whose domains do not give its own source return
    with (tmp_path / "edited.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = run_cli("leaderboard", str(tmp_path / "edited.csv"), cwd=tmp_path)
    assert proc.returncode != 0 and "edited.csv: cannot tell its source columns from its target columns" in output(proc)
    proc = run_cli("leaderboard", str(tmp_path / "absent.csv"), cwd=tmp_path)
    assert proc.returncode != 0 and "absent.csv is not a file" in output(proc)


def test_the_interval_of_rho_is_a_point_for_a_perfect_order_and_holds_rho_otherwise():
    x = np.arange(8.0)
    assert rho_interval(x, 2 * x + 1, bootstrap_rng("t")) == pytest.approx((1.0, 1.0))
    assert rho_interval(x, -x, bootstrap_rng("t")) == pytest.approx((-1.0, -1.0))
    y = np.random.default_rng(0).normal(size=8) + 0.5 * x
    low, high = rho_interval(x, y, bootstrap_rng("t"))
    assert low < rank_correlation(x, y) < high and -1.0 <= low < high <= 1.0


def test_leaderboard_names_the_runs_it_leaves_out_unfinished(comparison, tmp_path):
    import shutil

    _, tiny, _, _ = comparison
    shutil.copytree(tiny / "random_cnn", tmp_path / "partial" / "random_cnn")
    (tmp_path / "partial" / "random_cnn" / "seed1" / "transfer" / "manifest.json").unlink()
    rows = build_leaderboard(tmp_path / "partial")
    assert [r["seeds"] for r in rows] == [1]
    assert "Unfinished, left out (1): random_cnn/seed1." in (tmp_path / "partial" / "leaderboard.md").read_text()
    assert "Unfinished" not in (tiny / "leaderboard.md").read_text()


def test_a_models_leaderboard_row_does_not_depend_on_the_other_rows(comparison, tmp_path):
    import shutil

    _, tiny, _, _ = comparison
    # Six runs of random_cnn with distinct returns (copies of the two real ones, shifted), so that
    # the bootstrap intervals depend on the random draws; the oracle's two runs come first beside it.
    for copy in range(6):
        run = tmp_path / "alone" / "random_cnn" / f"seed{copy}"
        shutil.copytree(tiny / "random_cnn" / f"seed{copy % 2}", run)
        episodes = run / "transfer" / "episodes.jsonl"
        rows = read_jsonl(episodes)
        for i, r in enumerate(rows):
            r["return"] += 0.37 * copy + 0.11 * (i % 7)
        episodes.write_text("".join(json.dumps(r) + "\n" for r in rows))
        reseal(episodes.parent)
    shutil.copytree(tmp_path / "alone", tmp_path / "beside")
    shutil.copytree(tiny / "oracle", tmp_path / "beside" / "oracle")
    alone = build_leaderboard(tmp_path / "alone")
    beside = build_leaderboard(tmp_path / "beside", order=["oracle", "random_cnn"])
    assert [r["vision_model"] for r in beside] == ["oracle", "random_cnn"]
    assert alone[0]["source"]["ci_low"] < alone[0]["source"]["ci_high"]
    assert alone == beside[1:]  # bootstrap intervals included: each model draws from its own stream


def test_stratified_bootstrap_resamples_seeds_within_each_domain():
    rng = np.random.default_rng(0)
    # Each domain constant over seeds: every resample is the same table, so the interval is a point.
    table = np.tile([1.0, 2.0, 5.0], (4, 1))
    assert stratified_bootstrap_ci(table, rng) == pytest.approx((interquartile_mean(table.ravel()),) * 2)
    # A single seed: nothing to resample.
    assert stratified_bootstrap_ci(np.array([[3.0, 1.0]]), rng) == pytest.approx((2.0, 2.0))
    # Seeds differ: the mean's interval matches a direct percentile bootstrap of the column means.
    table = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0], [3.0, 13.0], [4.0, 14.0]])
    low, high = stratified_bootstrap_ci(table, np.random.default_rng(1), statistic=np.mean, resamples=4000)
    direct = np.random.default_rng(2)
    draws = [
        table[direct.integers(5, size=5), 0].mean() + table[direct.integers(5, size=5), 1].mean() for _ in range(4000)
    ]
    expected = np.percentile(np.array(draws) / 2, [2.5, 97.5])
    assert (low, high) == pytest.approx(tuple(expected), abs=0.15)
    with pytest.raises(ValueError, match="runs, tasks"):
        stratified_bootstrap_ci(np.zeros(3), rng)


def test_rank_correlation_by_hand():
    # Ties share their average rank: ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4), Pearson's on them is 3 / sqrt(10).
    assert rank_correlation([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(3 / np.sqrt(10))
    assert rank_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="1-D"):
        rank_correlation([1, 2, 3], [1, 2])


def test_oracle_reads_the_task_state_not_the_frames():
    from darla.vec_env import make_vec_env
    from envs.domains import Domain

    domains = [
        Domain("a", "darla/CollectGoodObjects-v0", {"object_set": "hat_can"}),
        Domain(
            "b",
            "darla/CollectGoodObjects-v0",
            {"object_set": "hat_can", "sky_rgb": [0.8, 0.1, 0.1], "num_distractors": 2},
        ),
    ]
    venv = make_vec_env(domains, 2, "dummy", seed=3, state=True)
    try:
        assert venv.observation_space.shape == (29,)  # 5 agent values + 4 per good/bad object
        states = []
        for name in ("a", "b"):  # same seed, other sky and two distractors: the same task state
            venv.seed(3)
            venv.set_options({"domain": name})
            states.append(venv.reset())
        np.testing.assert_allclose(states[0], states[1], atol=1e-6)
        obs, _, dones, infos = venv.step(np.array([2, 2]))
        assert obs.shape == (2, 29) and np.all(obs[:, 4] == pytest.approx(1 / 150))  # the step fraction moved
    finally:
        venv.close()


def test_oracle_is_refused_on_an_env_without_a_state(tmp_path):
    import gymnasium as gym

    from darla.latent_env import StateObservation

    with pytest.raises(ValueError, match="reports no ground-truth state"):
        StateObservation(gym.make("CartPole-v1"))


def test_darla_ft_fine_tunes_the_encoder_and_transfer_plays_its_own_copy(quick_run, tmp_path):
    runs = tmp_path / "runs"
    args = ("act", "vision_model=darla_ft", f"runs_dir={runs}", "name=ft", f"act.see_run={quick_run.see}", *TINY)
    check_ok(run_cli(*args, cwd=tmp_path, timeout=900))
    manifest = read_json(runs / "ft" / "act" / "manifest.json")
    assert manifest["policy"] == "CnnPolicy" and manifest["policy_input"] == "fine_tune"
    policy = load_file(runs / "ft" / "act" / "policy.safetensors")
    see = load_file(quick_run.see / "vision_model.safetensors")
    prefix = "features_extractor.vision."
    tuned = {k[len(prefix) :]: v for k, v in policy.items() if k.startswith(prefix)}
    assert set(see) <= set(tuned)
    encoder_keys = [k for k in see if k.startswith("encoder.")]
    assert encoder_keys and any(not torch.equal(see[k], tuned[k]) for k in encoder_keys)  # RL moved the encoder
    # The frozen DARLA policy of the same see run leaves it untouched: its policy holds no encoder.
    frozen = load_file(quick_run.act / "policy.safetensors")
    assert not any(k.startswith("features_extractor.vision.") for k in frozen)
    # transfer rebuilds the policy with its own fine-tuned encoder and plays it.
    proc = check_ok(run_cli("transfer", "vision_model=darla_ft", f"runs_dir={runs}", "name=ft", *TINY, cwd=tmp_path))
    assert "[transfer] done" in output(proc)


def test_graded_shifts_pair_intensities_of_one_shift():
    from darla.leaderboard import graded_shifts

    roles = {
        "plain": "source",
        "hue_0.5": "target",
        "hue_1.0": "target",
        "big_hue_0.5": "target",
        "tint_0.5": "target",
        "two": "target",
    }
    settings = {
        "plain": {"env_id": "e"},
        "hue_0.5": {"env_id": "e", "wrappers": {"hue": {"intensity": 0.5}}},
        "hue_1.0": {"env_id": "e", "wrappers": {"hue": {"intensity": 1.0}}},
        "big_hue_0.5": {"env_id": "e", "size": 6, "wrappers": {"hue": {"intensity": 0.5}}},
        "tint_0.5": {"env_id": "e", "wrappers": {"tint": {"intensity": 0.5, "rgb": [0, 0, 255]}}},
        "two": {"env_id": "e", "wrappers": {"hue": {"intensity": 0.2}, "tint": {"intensity": 0.2}}},
    }
    # Only the plain hue targets form a series: the bigger room, the lone tint and the double shift do not.
    assert graded_shifts(roles, settings) == {"hue": [(0.5, "hue_0.5"), (1.0, "hue_1.0")]}


def test_leaderboard_plots_transfer_against_shift_size(comparison, tmp_path):
    import shutil

    _, tiny, _, _ = comparison
    shutil.copytree(tiny / "oracle", tmp_path / "graded" / "oracle")
    for config in (tmp_path / "graded").glob("oracle/seed*/transfer/config.json"):
        settings = json.loads(config.read_text())
        # As if the two targets were one env under a hue shift of two sizes.
        heldout = settings["domains"]["heldout_pairing"]
        settings["domains"]["heldout_pairing"] = {**heldout, "wrappers": {"hue": {"intensity": 0.5}}}
        settings["domains"]["sky_red"] = {**heldout, "wrappers": {"hue": {"intensity": 1.0}}}
        config.write_text(json.dumps(settings))
    build_leaderboard(tmp_path / "graded")
    assert (tmp_path / "graded" / "transfer_vs_shift.png").stat().st_size > 0
    assert not (tiny / "transfer_vs_shift.png").exists()  # CollectGoodObjects' targets are not graded by a shift
