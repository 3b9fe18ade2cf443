"""The README's result tables are the ledger's: results/tables.py re-makes them from results/ alone."""

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("results_tables", ROOT / "results" / "tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)


def test_the_readme_tables_are_the_ledgers():
    text = tables.tables(ROOT / "results" / "runs.csv", ROOT / "results" / "leaderboard.csv")
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
