"""The README's result tables, from the results ledger and its leaderboard alone.

    python results/tables.py --append runs/ablations/runs.csv   # add finished runs to the ledger
    python -m darla.stage leaderboard results/runs.csv          # re-make leaderboard.csv from it
    python results/tables.py --room-probe runs/ablations/base/seed0   # its per-room probe, from see
    python results/tables.py --room-rho                         # that probe's Spearman rho with hat/can return
    python results/tables.py                                    # print the README's five tables
    python results/tables.py --readme README.md                 # or put them in place of the old ones

``--append`` copies the rows of a leaderboard's runs.csv whose path the ledger does not hold yet,
column by column under the ledger's header (a column the ledger lacks is refused), with the path
written as ``runs/ablations/<variant>/seed<k>``. ``--room-probe`` adds to ``room_probe.csv`` what a
run's vision reads of the nearest object's kind (MLP probe, held-out exploration episodes) in the
targets' source room (hat/can) and, averaged, in the two cake/balloon rooms; the per-room table
joins it with the ledger's returns by path; ``--room-rho`` prints the hat/can probe's Spearman rho
with the hat/can return over those runs, with the leaderboard's bootstrap 95% interval (runs resampled).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from darla.evaluation import rank_correlation
from darla.leaderboard import bootstrap_rng, rho_interval

HERE = Path(__file__).parent
FIRST = ["beta_vae_dae", "pixels", "oracle"]  # the goal's rows first, then the variants in ledger order
# The comparison of encoders at the default budget: DARLA, the baselines, then the rest of the zoo.
# Their runs live in runs/compare_<env>/<model>/seed<k>; the ablation table leaves the zoo's own rows out.
ZOO = ["darla_ft", "beta_vae", "vae", "dae", "random_cnn"]
COLUMNS = ["source", "target", "transfer_ratio", "heldout", "ood1", "near_vision", "ood2"]  # of each summary row


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def ledger_path(path: str) -> str:
    """``runs/ablations/...`` or ``runs/compare_<env>/...``, wherever the runs directory was."""
    parts = Path(path).parts
    tops = [i for i, part in enumerate(parts) if part == "ablations" or part.startswith("compare_")]
    return str(Path("runs", *parts[tops[-1] :])) if tops else path


def append(ledger: Path, new: Path) -> list[str]:
    with ledger.open(newline="") as f:
        reader = csv.DictReader(f)
        header, have = reader.fieldnames, {row["path"] for row in reader}
    rows = read_rows(new)
    extra = sorted({k for row in rows for k, v in row.items() if k not in header and v not in ("", None)})
    if extra:
        sys.exit(f"{new}: columns {', '.join(extra)} are not in {ledger}'s header")
    added = []
    with ledger.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n", extrasaction="ignore")
        for row in rows:
            row["path"] = ledger_path(row["path"])
            if row["path"] not in have:
                writer.writerow({k: row.get(k, "") for k in header})
                have.add(row["path"])
                added.append(row["path"])
    return added


ROOMS = {"hat_can": ["hat_can_default"], "cake_balloon": ["cake_balloon_default", "cake_balloon_alternative"]}


def room_probe(run: Path) -> dict:
    """The nearest object's kind as the run's see metrics read it, per source room."""
    metrics = run / "see" / "metrics.json"
    if not metrics.is_file():
        sys.exit(f"{metrics}: no see metrics (the run directory needs its see stage)")
    scores = json.loads(metrics.read_text())["task_probe"]["quantities"]["nearest_kind"]["mlp"]
    row = {"path": ledger_path(str(run))}
    for name, rooms in ROOMS.items():
        row[name] = f"{sum(scores[f'heldout_episodes/{room}'] for room in rooms) / len(rooms):.4f}"
    return row


def append_room_probes(table: Path, runs: list[Path]) -> list[str]:
    have = {row["path"] for row in read_rows(table)}
    added = []
    with table.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", *ROOMS], lineterminator="\n")
        for run in runs:
            row = room_probe(run)
            if row["path"] not in have:
                writer.writerow(row)
                have.add(row["path"])
                added.append(row["path"])
    return added


def num(value: str | float | None) -> str:
    return "–" if value in ("", None) else f"{float(value):.2f}"


def cell(row: dict, key: str) -> str:
    if int(row["seeds"]) == 1:
        return num(row[f"{key}_iqm"])
    return f"{num(row[f'{key}_iqm'])} [{num(row[f'{key}_ci_low'])}, {num(row[f'{key}_ci_high'])}]"


def probe(row: dict) -> str:
    return " / ".join(num(row.get(k)) for k in ("Task probe", "Task probe (source rooms)", "Task probe (targets)"))


def order(labels: list[str]) -> list[str]:
    seen = list(dict.fromkeys(labels))
    return [m for m in FIRST if m in seen] + [m for m in seen if m not in FIRST]


def room_table(runs: list[dict], labels: list[str], probes: list[dict]) -> list[str]:
    by_path = {r["path"]: r for r in runs}
    rows = [(by_path[p["path"]], p) for p in probes if p["path"] in by_path]
    rows.sort(key=lambda rp: (labels.index(rp[0]["vision_model"]), int(rp[0]["seed"])))
    table = [
        "| run | nearest object's kind, probe on hat/can held-out episodes | hat/can return "
        "| same probe, mean of the cake/balloon source rooms | cake/balloon returns |",
        "|" + "---|" * 5,
    ]
    for r, p in rows:
        table.append(
            f"| {r['vision_model']} s{r['seed']} | {num(p['hat_can'])} | {num(r['hat_can_default'])} "
            f"| {num(p['cake_balloon'])} | {num(r['cake_balloon_default'])} / {num(r['cake_balloon_alternative'])} |"
        )
    return table


def room_rho(runs: list[dict], probes: list[dict]) -> tuple[int, float, float, float]:
    """Runs joined, Spearman rho of the hat/can probe with the hat/can return, and its 95% interval."""
    by_path = {r["path"]: r for r in runs}
    joined = [p for p in probes if p["path"] in by_path]
    xs = [float(p["hat_can"]) for p in joined]
    ys = [float(by_path[p["path"]]["hat_can_default"]) for p in joined]
    low, high = rho_interval(xs, ys, bootstrap_rng("hat_can probe/hat_can return"))
    return len(joined), rank_correlation(xs, ys), low, high


def tables(ledger: Path, board: Path, room_probes: Path | None = None) -> str:
    runs = read_rows(ledger)
    models = {row["vision_model"]: row for row in read_rows(board)}
    labels = order([r["vision_model"] for r in runs])
    darla, pixels = models["beta_vae_dae"], models["pixels"]
    goal = [
        "| | β-VAE_DAE | pixels | goal | met |",
        "|---|---|---|---|---|",
        f"| seeds | {darla['seeds']} | {pixels['seeds']} | 5 each | |",
        f"| source return | {cell(darla, 'source')} | {cell(pixels, 'source')} | β-VAE_DAE ≥ 0.9 × pixels = "
        f"{0.9 * float(pixels['source_iqm']):.2f} | "
        f"{'yes' if float(darla['source_iqm']) >= 0.9 * float(pixels['source_iqm']) else 'no'} |",
    ]
    for group in ("heldout", "ood1"):
        ours, theirs = float(darla[f"{group}_ratio_iqm"]), float(pixels[f"{group}_ratio_iqm"])
        met = "yes" if ours >= 0.8 and ours >= theirs else "no"
        goal.append(
            f"| {group} ratio | {cell(darla, f'{group}_ratio')} | {cell(pixels, f'{group}_ratio')} "
            f"| ≥ 0.8 and ≥ pixels | {met} |"
        )
    header = "| seeds | source | target | ratio | heldout | ood1 | near_vision | ood2 "
    header += "| probe: held-out / source rooms / targets |"

    def summary(first: str, rows: list[str]) -> list[str]:
        table = [f"| {first} {header}", "|" + "---|" * 10]
        for label in rows:
            cells = " | ".join(cell(models[label], c) for c in COLUMNS)
            table.append(f"| {label} | {models[label]['seeds']} | {cells} | {probe(models[label])} |")
        return table

    variants = summary("variant", [label for label in labels if label not in ZOO])
    comparison = summary("vision model", [m for m in [*FIRST, *ZOO] if m in models])
    per_run = [
        "| run | commit | source | hat/can | cake/balloon default / alternative | target | ratio "
        "| heldout pairing | probe: held-out / source rooms / targets |",
        "|" + "---|" * 9,
    ]
    for label in labels:
        for r in sorted((r for r in runs if r["vision_model"] == label), key=lambda r: int(r["seed"])):
            per_run.append(
                f"| {label} s{r['seed']} | {r['commit']} | {num(r['source'])} | {num(r['hat_can_default'])} "
                f"| {num(r['cake_balloon_default'])} / {num(r['cake_balloon_alternative'])} | {num(r['target'])} "
                f"| {num(r['transfer_ratio'])} | {num(r['heldout_pairing'])} | {probe(r)} |"
            )
    out = [goal, variants, per_run, comparison]
    if room_probes is not None:
        out.append(room_table(runs, labels, read_rows(room_probes)))
    return "\n\n".join("\n".join(t) for t in out)


def replace_tables(readme: Path, text: str) -> None:
    """Each table of ``text`` replaces the README's table with the same header line."""
    lines = readme.read_text().split("\n")
    for table in text.split("\n\n"):
        new = table.split("\n")
        start = lines.index(new[0])
        end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
        lines[start:end] = new
    readme.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--append", type=Path, help="a leaderboard's runs.csv whose new rows join the ledger")
    parser.add_argument(
        "--room-probe", type=Path, nargs="+", help="run directories: their probe per room joins room_probe.csv"
    )
    parser.add_argument("--room-rho", action="store_true", help="the hat/can probe's rho with the hat/can return")
    parser.add_argument("--ledger", type=Path, default=HERE / "runs.csv")
    parser.add_argument("--readme", type=Path, help="a README whose tables of the same headers are replaced")
    args = parser.parse_args()
    probes = args.ledger.parent / "room_probe.csv"
    if args.append:
        for path in append(args.ledger, args.append):
            print(f"added {path}")
        return
    if args.room_probe:
        for path in append_room_probes(probes, args.room_probe):
            print(f"added {path} to room_probe.csv")
        return
    if args.room_rho:
        n, rho, low, high = room_rho(read_rows(args.ledger), read_rows(probes))
        print(f"{n} runs: Spearman rho {rho:.2f} [{low:.2f}, {high:.2f}]")
        return
    text = tables(args.ledger, args.ledger.parent / "leaderboard.csv", probes)
    if args.readme:
        replace_tables(args.readme, text)
    else:
        print(text)


if __name__ == "__main__":
    main()
