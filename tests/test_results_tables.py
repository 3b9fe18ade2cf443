"""The README's result tables are the ledger's: results/tables.py re-makes them from results/ alone."""

import csv
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_tables", ROOT / "results" / "tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)


def test_the_readme_tables_are_the_ledgers():
    results = ROOT / "results"
    text = tables.tables(results / "runs.csv", results / "leaderboard.csv", results / "room_probe.csv")
    readme = (ROOT / "README.md").read_text()
    for table in text.split("\n\n"):
        assert table in readme, table.split("\n")[0]


def write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def test_append_adds_new_runs_once_and_refuses_unknown_columns(tmp_path):
    ledger, new = tmp_path / "ledger.csv", tmp_path / "new.csv"
    write(ledger, ["vision_model", "seed", "source", "path"], [["a", "0", "1.0", "runs/ablations/a/seed0"]])
    write(
        new,
        ["vision_model", "seed", "path", "source"],
        [["a", "0", "/x/runs/ablations/a/seed0", "1.0"], ["b", "3", "/x/runs/ablations/b/seed3", "2.0"]],
    )
    assert tables.append(ledger, new) == ["runs/ablations/b/seed3"]
    assert tables.append(ledger, new) == []
    rows = list(csv.DictReader(ledger.open()))
    assert rows[-1] == {"vision_model": "b", "seed": "3", "source": "2.0", "path": "runs/ablations/b/seed3"}
    write(new, ["vision_model", "seed", "path", "surprise"], [["c", "0", "runs/ablations/c/seed0", "9"]])
    with pytest.raises(SystemExit, match="surprise"):
        tables.append(ledger, new)


def test_room_probe_reads_the_see_metrics_once_per_run_and_joins_the_ledger(tmp_path):
    run = tmp_path / "runs" / "ablations" / "b" / "seed3"
    (run / "see").mkdir(parents=True)
    scores = {"heldout_episodes/hat_can_default": 0.5, "heldout_episodes/cake_balloon_default": 0.8}
    scores["heldout_episodes/cake_balloon_alternative"] = 0.6
    metrics = {"task_probe": {"quantities": {"nearest_kind": {"mlp": scores}}}}
    (run / "see" / "metrics.json").write_text(json.dumps(metrics))
    table = tmp_path / "room_probe.csv"
    write(table, ["path", "hat_can", "cake_balloon"], [])
    assert tables.append_room_probes(table, [run]) == ["runs/ablations/b/seed3"]
    assert tables.append_room_probes(table, [run]) == []
    probes = list(csv.DictReader(table.open()))
    assert probes == [{"path": "runs/ablations/b/seed3", "hat_can": "0.5000", "cake_balloon": "0.7000"}]
    runs = [{"vision_model": "b", "seed": "3", "path": "runs/ablations/b/seed3", "hat_can_default": "1.5"}]
    runs[0] |= {"cake_balloon_default": "2", "cake_balloon_alternative": "2.25"}
    assert tables.room_table(runs, ["b"], probes)[-1] == "| b s3 | 0.50 | 1.50 | 0.70 | 2.00 / 2.25 |"
    with pytest.raises(SystemExit, match="no see metrics"):
        tables.append_room_probes(table, [tmp_path / "runs" / "ablations" / "b" / "seed4"])


def test_room_rho_orders_runs_by_their_hat_can_probe_and_skips_runs_the_ledger_lacks():
    runs = [{"path": f"r{i}", "hat_can_default": str(r)} for i, r in enumerate([-0.2, 0.6, 1.2, 1.9])]
    probes = [{"path": f"r{i}", "hat_can": str(p)} for i, p in enumerate([0.0, 0.1, 0.4, 0.8])]
    probes.append({"path": "gone", "hat_can": "0.9"})
    assert tables.room_rho(runs, probes) == (4, 1.0, 1.0, 1.0)
    reversed_probes = [{"path": p["path"], "hat_can": str(1 - float(p["hat_can"]))} for p in probes[:4]]
    n, rho, low, high = tables.room_rho(runs, reversed_probes)
    assert (n, rho, low, high) == (4, -1.0, -1.0, -1.0)


def test_ledger_paths_keep_ablations_and_comparisons_and_the_zoo_gets_its_own_table(tmp_path):
    assert tables.ledger_path("/x/runs/ablations/a/seed0") == "runs/ablations/a/seed0"
    assert (
        tables.ledger_path("/x/y/compare_collect_good_objects/vae/seed1")
        == "runs/compare_collect_good_objects/vae/seed1"
    )
    assert tables.ledger_path("elsewhere/vae/seed1") == "elsewhere/vae/seed1"
    assert tables.ledger_path("/compare_old/runs/ablations/a/seed0") == "runs/ablations/a/seed0"
    ledger, board = tmp_path / "runs.csv", tmp_path / "leaderboard.csv"
    returns = ["commit", "source", "target", "transfer_ratio", "heldout_pairing", "hat_can_default"]
    returns += ["cake_balloon_default", "cake_balloon_alternative"]
    labels = ("vae", "beta_vae_dae+x", "pixels")
    write(ledger, ["vision_model", "seed", "path", *returns], [[m, "0", m, *["1"] * len(returns)] for m in labels])
    stats = [f"{c}_{s}" for c in [*tables.COLUMNS, "heldout_ratio", "ood1_ratio"] for s in ("iqm", "ci_low", "ci_high")]
    rows = [[m, "1", *["1.0"] * len(stats)] for m in ("beta_vae_dae", "pixels", "beta_vae_dae+x", "vae")]
    write(board, ["vision_model", "seeds", *stats], rows)
    goal, variants, per_run, comparison = tables.tables(ledger, board).split("\n\n")
    assert [line.split(" | ")[0] for line in variants.split("\n")[2:]] == ["| pixels", "| beta_vae_dae+x"]
    assert [line.split(" | ")[0] for line in comparison.split("\n")[2:]] == ["| beta_vae_dae", "| pixels", "| vae"]
