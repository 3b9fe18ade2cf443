"""The leaderboard of a comparison: every finished run under one directory, gathered and ranked.

A comparison's runs live at ``<dir>/<vision model>/seed<k>/{see,act,transfer}`` (``compare``
names them so; any runs with transfer results under ``<dir>`` are gathered). Everything here is
derived from their raw files (transfer/episodes.jsonl, act/eval.jsonl, see/metrics.json), so
``python -m darla.stage leaderboard <dir>`` re-makes it at any time without running anything.

Per vision model, over its seeds (IQM with stratified-bootstrap 95% intervals, Agarwal et al. 2021):
- source return: IQM over (seed, source domain) of each seed's mean return in that domain; the
  bootstrap resamples seeds within each domain;
- target return: the same over target domains, and per target group (ood1, ood2, ...);
- transfer ratio: each seed's mean target return over its mean source return; IQM over seeds; the
  same per target group (``<group> ratio``: the group's mean return over the source's);
- mean ± std over seeds of each, and the vision stage's headline disentanglement metrics and task probe;
- the random policy's returns on the same episodes, where it played, for scale (a row of its own in
  leaderboard.csv, a line under the table, a series in returns_per_domain.png);
- sanity flags (darla/sanity.py) of each model: its runs' (with the seeds that raise them), seeds
  that returned exactly the same, intervals of zero width.

Outputs in ``<dir>``: leaderboard.md, leaderboard.csv (one row per vision model), runs.csv (one
row per run), returns_per_domain.png, disentanglement_vs_transfer.png (its rank correlations in
correlations.json), training_curves.png, and transfer_vs_shift.png where targets are graded by a
shift's intensity; each figure (vision_models/plots.py, matplotlib) also as a PDF of the same name.

A runs.csv is also a results ledger: rows appended from several leaderboards keep what the tables,
the returns plot and the correlations need when the run directories are gone, and
``python -m darla.stage leaderboard <runs.csv>`` writes them beside it from its rows alone.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from scipy import stats

from darla.artifacts import MANIFEST, atomic_write, read_json, read_jsonl, read_manifest, write_json
from darla.evaluation import interquartile_mean, rank_correlation, stratified_bootstrap_ci
from darla.sanity import episode_flags, interval_flags, seed_flags
from vision_models.plots import curves_plot, interval_plot, save_figure, scatter_plot

# The task probe's summary numbers (darla/probe.py): key in metrics.json's task_probe, short title.
PROBE_SCORES = (
    ("heldout", "Task probe"),
    ("source", "Task probe (source rooms)"),
    ("targets", "Task probe (targets)"),
)
METRIC_CONFIGS = Path(str(importlib.resources.files("configs"))) / "metric"


@functools.cache
def shipped_headlines() -> dict[str, dict[str, str]]:
    """configs/metric/*.yaml's headline scores, read as data: for see runs whose metrics.json predates
    its own ``headline`` record."""
    return {p.stem: dict(OmegaConf.load(p).get("headline") or {}) for p in sorted(METRIC_CONFIGS.glob("*.yaml"))}


def headline_scores(report: dict) -> dict[str, float]:
    """A see run's metrics.json -> {column title: score} for the scores its metrics call headline."""
    scores = report.get("metrics", {})
    headline = report.get("headline") or {name: shipped_headlines().get(name, {}) for name in scores}
    return {
        title: float(scores[metric][key])
        for metric, keys in headline.items()
        for key, title in keys.items()
        if key in scores.get(metric, {})
    }


def score_titles(runs) -> list[str]:
    """Every score title some run has, metrics first (as each run lists them), then the task probe."""
    titles, probe = dict.fromkeys(title for run in runs for title in run.metrics), [t for _, t in PROBE_SCORES]
    return [t for t in titles if t not in probe] + [t for t in probe if t in titles]


BOOTSTRAP_SEED = 0  # fixed, so re-making a leaderboard gives the same intervals


@dataclass
class RunResult:
    """One finished see → act → transfer run, reduced to what a comparison needs."""

    path: Path
    vision_model: str
    seed: int
    domain_returns: dict[str, float]  # mean policy return per evaluated domain
    roles: dict[str, str]  # domain -> source | target
    groups: dict[str, str]  # target domain -> its group, where it has one
    metrics: dict[str, float] = field(default_factory=dict)  # headline title -> score
    curves: list[dict] = field(default_factory=list)  # act's per-domain evaluation history
    domain_settings: dict[str, dict] = field(default_factory=dict)  # domain -> env id, kwargs, wrappers
    random_returns: dict[str, float] = field(default_factory=dict)  # the random policy's, where it played
    flags: dict[str, str] = field(default_factory=dict)  # darla/sanity.py: of the transfer and the see run
    commit: str = ""  # darla's git commit that made the transfer (manifest versions), for the results ledger

    def mean_return(self, role: str, group: str | None = None) -> float:
        names = [d for d, r in self.roles.items() if r == role and (group is None or self.groups.get(d) == group)]
        return float(np.mean([self.domain_returns[d] for d in names])) if names else float("nan")

    @property
    def transfer_ratio(self) -> float:
        return self.group_ratio(None)

    def group_ratio(self, group: str | None) -> float:
        """Target return (of one target group, or of all targets) / source return."""
        source = self.mean_return("source")
        return self.mean_return("target", group) / source if source else float("nan")


def read_run(path: Path) -> RunResult:
    """A run directory holding a finished transfer/ (and the act/, maybe see/, it came from)."""
    played = read_jsonl(path / "transfer" / "episodes.jsonl")
    episodes = [e for e in played if e["policy"] == "policy"]
    randoms = [e for e in played if e["policy"] == "random"]
    manifest = read_manifest(path / "transfer", "transfer")
    domains = list(dict.fromkeys(e["domain"] for e in episodes))
    returns = {d: float(np.mean([e["return"] for e in episodes if e["domain"] == d])) for d in domains}
    roles = {e["domain"]: e["role"] for e in episodes}
    groups = {e["domain"]: e["group"] for e in episodes if "group" in e}
    act_dir = Path(manifest["act_dir"])
    seed = int(read_json(act_dir / "config.json")["seed"])
    curves = read_jsonl(act_dir / "eval.jsonl") if (act_dir / "eval.jsonl").exists() else []
    see_dir = read_manifest(act_dir, "act").get("see_dir")
    metrics: dict[str, float] = {}
    # The vision's scores (see/metrics.json); the task probe of an encoder RL trained (pixels,
    # darla_ft) is act's own (act/metrics.json) and takes precedence: it is what the policy reads.
    for report_path in [*([Path(see_dir) / "metrics.json"] if see_dir else []), act_dir / "metrics.json"]:
        if report_path.exists():
            report = read_json(report_path)
            probe = report.get("task_probe", {})
            metrics.update(headline_scores(report))
            metrics.update({title: float(probe[key]) for key, title in PROBE_SCORES if probe.get(key) is not None})
    settings = read_json(path / "transfer" / "config.json")["domains"]
    random_returns = {
        d: float(np.mean([e["return"] for e in randoms if e["domain"] == d]))
        for d in dict.fromkeys(e["domain"] for e in randoms)
    }
    flags = episode_flags(played)
    if see_dir and (Path(see_dir) / "latents.json").exists():
        flags.update(read_json(Path(see_dir) / "latents.json").get("flags", {}))
    label = manifest.get("label") or manifest["vision_model"]  # the row: a vision model, or an ablation's variant
    return RunResult(
        path,
        label,
        seed,
        returns,
        roles,
        groups,
        metrics,
        curves,
        settings,
        random_returns,
        flags,
        manifest.get("versions", {}).get("darla_commit", ""),
    )


def graded_shifts(roles: dict[str, str], settings: dict[str, dict]) -> dict[str, list[tuple[float, str]]]:
    """Target domains that differ only in one appearance shift's intensity, as shift -> [(intensity, domain)].

    A domain counts when it has exactly one shift (envs/shifts.py) with an ``intensity``; domains
    whose env kwargs or other shift arguments differ form separate series. Series of one domain are
    left out: there is no size to plot against.
    """
    series: dict[str, list[tuple[float, str]]] = {}
    for name, entry in settings.items():
        wrappers = entry.get("wrappers") or {}
        if roles.get(name) != "target" or len(wrappers) != 1:
            continue
        ((shift, arguments),) = wrappers.items()
        arguments = dict(arguments or {})
        if "intensity" not in arguments:
            continue
        intensity = float(arguments.pop("intensity"))
        kwargs = {k: v for k, v in entry.items() if k not in ("env_id", "wrappers")}
        label = ", ".join(
            [
                shift,
                *(f"{k}={v}" for k, v in sorted(arguments.items())),
                *(f"{k}={v}" for k, v in sorted(kwargs.items())),
            ]
        )
        series.setdefault(label, []).append((intensity, name))
    return {label: sorted(points) for label, points in series.items() if len(points) > 1}


def find_runs(root: Path) -> list[RunResult]:
    """Every finished run under ``root`` (unfinished ones are left out), by vision model then seed."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory of runs")
    runs = [read_run(m.parent.parent) for m in sorted(root.glob("**/transfer/" + MANIFEST))]
    if not runs:
        raise FileNotFoundError(f"no finished runs (transfer/{MANIFEST}) under {root}")
    return sorted(runs, key=lambda r: (r.vision_model, r.seed))


def unfinished_runs(root: Path) -> list[str]:
    """Runs under ``root`` that started a stage but have no finished transfer yet (left out of the
    leaderboard), as paths relative to ``root``: a sweep still going, or jobs that failed."""
    started = {c.parent.parent for stage in ("see", "act", "transfer") for c in root.glob(f"**/{stage}/config.json")}
    return sorted(str(run.relative_to(root)) for run in started if not (run / "transfer" / MANIFEST).exists())


def _interval(table: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """IQM, its stratified-bootstrap 95% interval, and mean ± std over seeds of a (seeds, domains) table."""
    per_seed = table.mean(axis=1)
    low, high = stratified_bootstrap_ci(table, rng)
    return {
        "iqm": interquartile_mean(table.ravel()),
        "ci_low": low,
        "ci_high": high,
        "mean": float(per_seed.mean()),
        "std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
    }


def summarize_model(runs: list[RunResult], rng: np.random.Generator) -> dict:
    """One leaderboard row: a vision model's returns, ratio and metrics over its seeds."""
    first = runs[0]
    row: dict = {"vision_model": first.vision_model, "seeds": len(runs)}
    groups = list(dict.fromkeys(g for r in runs for g in r.groups.values()))
    for column, (role, group) in {
        "source": ("source", None),
        "target": ("target", None),
        **{g: ("target", g) for g in groups},
    }.items():
        names = [d for d, r in first.roles.items() if r == role and (group is None or first.groups.get(d) == group)]
        if names:
            row[column] = _interval(np.array([[run.domain_returns[d] for d in names] for run in runs]), rng)
    for column, group in {"transfer_ratio": None, **{f"{g}_ratio": g for g in groups}}.items():
        ratios = np.array([[run.group_ratio(group)] for run in runs])
        if np.all(np.isfinite(ratios)):
            row[column] = _interval(ratios, rng)
    titles = [t for t in score_titles(runs) if all(t in r.metrics for r in runs)]
    row["metrics"] = {t: float(np.mean([r.metrics[t] for r in runs])) for t in titles}
    row["flags"] = model_flags(runs, row)
    return row


def model_flags(runs: list[RunResult], row: dict) -> dict[str, str]:
    """The sanity flags of a model's row: each run's (with the seeds that raise it), identical seeds,
    zero-width intervals."""
    flags = {}
    for flag in dict.fromkeys(f for r in runs for f in r.flags):
        seeds = [r.seed for r in runs if flag in r.flags]
        flags[flag] = f"seeds {seeds}: " + next(r.flags[flag] for r in runs if flag in r.flags)
    flags.update(seed_flags({r.seed: r.domain_returns for r in runs}))
    flags.update(interval_flags(row, ["source", "target"]))
    return flags


def random_played(runs: list[RunResult]) -> list[RunResult]:
    """The runs in which the random policy played every domain the policy did."""
    return [r for r in runs if r.random_returns.keys() == r.domain_returns.keys()]


def random_row(runs: list[RunResult]) -> dict | None:
    """The random policy's source and target returns over the runs where it played, for scale."""
    played = random_played(runs)
    if not played:
        return None
    row: dict = {"vision_model": "random policy", "seeds": len(played), "metrics": {}, "flags": {}}
    rng = bootstrap_rng("random policy")
    for role in ("source", "target"):
        names = [d for d, r in played[0].roles.items() if r == role]
        if names:
            row[role] = _interval(np.array([[run.random_returns[d] for d in names] for run in played]), rng)
    return row


def _check_same_domains(runs: list[RunResult]) -> None:
    reference = runs[0]
    for run in runs[1:]:
        if run.roles != reference.roles:
            raise ValueError(
                f"{run.path} was evaluated on other domains than {reference.path}; "
                f"a comparison needs every run evaluated on the same source and target domains"
            )


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "–"
    return (
        f"{entry['iqm']:.2f} [{entry['ci_low']:.2f}, {entry['ci_high']:.2f}] ({entry['mean']:.2f} ± {entry['std']:.2f})"
    )


def markdown_table(rows: list[dict]) -> str:
    returns = [k for k in rows[0] if k not in ("vision_model", "seeds", "metrics", "flags") and not k.endswith("ratio")]
    columns = [*returns, *[k for k in rows[0] if k.endswith("ratio")]]  # source, target, groups; then the ratios
    titles = list(dict.fromkeys(t for row in rows for t in row["metrics"]))
    header = ["vision model", "seeds", *[c.replace("_", " ") for c in columns], *titles, "flags"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row["vision_model"],
            str(row["seeds"]),
            *[_cell(row.get(c)) for c in columns],
            *[f"{row['metrics'][t]:.3f}" if t in row["metrics"] else "–" for t in titles],
            ", ".join(row["flags"]) or "–",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_text(rows: list[dict]) -> str:
    """One line per vision model; interval columns flattened as <column>_<statistic>."""
    flat = []
    for row in rows:
        entry = {"vision_model": row["vision_model"], "seeds": row["seeds"], "flags": ";".join(row["flags"])}
        for key, value in row.items():
            if isinstance(value, dict) and key not in ("metrics", "flags"):
                entry.update({f"{key}_{stat}": v for stat, v in value.items()})
        entry.update(row["metrics"])
        flat.append(entry)
    fields = list(dict.fromkeys(k for entry in flat for k in entry))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    return out.getvalue()


def runs_csv_text(runs: list[RunResult]) -> str:
    """One line per run: its per-domain mean returns, source/target/ratio and metrics (the plots' data)."""
    domains = list(runs[0].roles)
    titles = list(dict.fromkeys(t for r in runs for t in r.metrics))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["vision_model", "seed", "source", "target", "transfer_ratio", *domains, *titles, "commit", "path"])
    for r in runs:
        writer.writerow(
            [
                r.vision_model,
                r.seed,
                r.mean_return("source"),
                r.mean_return("target"),
                r.transfer_ratio,
                *[r.domain_returns[d] for d in domains],
                *[r.metrics.get(t, "") for t in titles],
                r.commit,
                r.path,
            ]
        )
    return out.getvalue()


def bootstrap_rng(vision_model: str) -> np.random.Generator:
    """One bootstrap stream per model, so a model's intervals do not depend on the other rows."""
    return np.random.default_rng([BOOTSTRAP_SEED, *vision_model.encode()])


def build_leaderboard(root: Path, order: list[str] | None = None) -> list[dict]:
    """Gather the runs under ``root`` and write the leaderboard files and plots there."""
    root = Path(root)
    runs = find_runs(root)
    rows = write_leaderboard(root, root.name, runs, order, unfinished_runs(root))
    atomic_write(root / "runs.csv", lambda tmp: tmp.write_text(runs_csv_text(runs)))
    return rows


def write_leaderboard(
    out: Path, title: str, runs: list[RunResult], order: list[str] | None = None, unfinished: list[str] = ()
) -> list[dict]:
    """The tables (leaderboard.md, leaderboard.csv) and plots of ``runs`` (one row per vision model,
    models in ``order`` first), written to ``out``."""
    _check_same_domains(runs)
    models = list(
        dict.fromkeys(
            [*(m for m in order or [] if any(r.vision_model == m for r in runs)), *(r.vision_model for r in runs)]
        )
    )
    by_model = {m: [r for r in runs if r.vision_model == m] for m in models}
    rows = [summarize_model(by_model[m], bootstrap_rng(m)) for m in models]

    reference = random_row(runs)
    seeds_note = ", ".join(f"{m}: seeds {[r.seed for r in by_model[m]]}" for m in models)
    warnings = "".join(
        f"- {row['vision_model']}, **{flag}**: {why}\n" for row in rows for flag, why in row["flags"].items()
    )
    random_note = (
        f"The random policy (uniform actions on the same episodes, {reference['seeds']} runs): source "
        f"{_cell(reference.get('source'))}, target {_cell(reference.get('target'))}.\n"
        if reference
        else "The random policy did not play in these runs (transfer.random_policy=false, or a ledger): no reference.\n"
    )
    text = (
        f"# Leaderboard: {title}\n\n"
        "Each cell: interquartile mean over seeds × domains [stratified-bootstrap 95% interval] "
        "(mean ± std over seeds). Transfer ratio = target return / source return, per seed "
        "(<group> ratio: that target group's return / source return). "
        "Metrics: mean over seeds of the vision stage's scores.\n\n"
        f"{markdown_table(rows)}\n\n{random_note}\nRuns: {seeds_note}.\n"
        + (f"\nWarnings (darla/sanity.py):\n{warnings}" if warnings else "")
    )
    if unfinished:
        text += f"\nUnfinished, left out ({len(unfinished)}): {', '.join(unfinished)}.\n"
    atomic_write(out / "leaderboard.md", lambda tmp: tmp.write_text(text))
    atomic_write(
        out / "leaderboard.csv", lambda tmp: tmp.write_text(csv_text(rows + ([reference] if reference else [])))
    )
    _plot(out, runs, by_model)
    return rows


def _plot(root: Path, runs: list[RunResult], by_model: dict[str, list[RunResult]]) -> None:
    domains = list(runs[0].roles)
    per_domain = {}
    for model, model_runs in by_model.items():
        per_domain[model] = []
        rng = bootstrap_rng(model)
        for d in domains:
            values = np.array([[r.domain_returns[d]] for r in model_runs])
            per_domain[model].append(
                (interquartile_mean(values.ravel()), *stratified_bootstrap_ci(values, rng, resamples=500))
            )
    played = random_played(runs)
    if played:
        rng = bootstrap_rng("random policy")
        values = {d: np.array([[r.random_returns[d]] for r in played]) for d in domains}
        per_domain["random policy"] = [
            (interquartile_mean(values[d].ravel()), *stratified_bootstrap_ci(values[d], rng, resamples=500))
            for d in domains
        ]
    source_count = sum(role == "source" for role in runs[0].roles.values())
    save_figure(
        interval_plot(
            domains,
            per_domain,
            title="Return per domain: IQM over seeds, 95% bootstrap interval",
            ylabel="episode return",
            divider=source_count,
        ),
        root / "returns_per_domain.png",
    )

    write_correlations(root, runs)

    # Transfer against shift size, for targets graded by one shift's intensity.
    shifts = graded_shifts(runs[0].roles, runs[0].domain_settings)
    if shifts:
        series = {model: [r.domain_returns for r in model_runs] for model, model_runs in by_model.items()}
        if played:
            series["random policy"] = [r.random_returns for r in played]
        panels = {
            label: {
                model: (
                    np.array([i for i, _ in points]),
                    np.array([interquartile_mean([returns[d] for returns in model_returns]) for _, d in points]),
                )
                for model, model_returns in series.items()
            }
            for label, points in shifts.items()
        }
        save_figure(
            curves_plot(
                panels,
                title="Return against shift intensity (IQM over seeds)",
                xlabel="shift intensity",
                ylabel="return",
            ),
            root / "transfer_vs_shift.png",
        )

    curves = {}
    for d in [d for d, role in runs[0].roles.items() if role == "source"]:
        curves[d] = {}
        for model, model_runs in by_model.items():
            points = {}
            for r in model_runs:
                for e in r.curves:
                    if e["domain"] == d:
                        points.setdefault(e["timesteps"], []).append(e["mean"])
            if points:
                steps = sorted(points)
                curves[d][model] = (np.array(steps, float), np.array([np.mean(points[s]) for s in steps]))
    if any(curves.values()):
        save_figure(
            curves_plot(
                curves,
                title="Training: mean evaluation return per source domain (mean over seeds)",
                xlabel="env steps",
                ylabel="return",
            ),
            root / "training_curves.png",
        )


# Bootstrap resamples of the runs for each rank correlation's 95% interval (fixed seed: same files).
RHO_RESAMPLES = 2000


def rho_interval(xs, ys, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile-bootstrap interval of Spearman's rho, resampling runs; resamples in which x or y is
    constant (rho undefined) are left out."""
    x, y = np.asarray(xs, float), np.asarray(ys, float)
    picks = rng.integers(0, len(x), size=(RHO_RESAMPLES, len(x)))
    rx, ry = (stats.rankdata(v[picks], axis=1) for v in (x, y))  # Spearman = Pearson on average ranks
    rx, ry = rx - rx.mean(axis=1, keepdims=True), ry - ry.mean(axis=1, keepdims=True)
    norm = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    defined = norm > 0
    rhos = np.clip((rx * ry).sum(axis=1)[defined] / norm[defined], -1.0, 1.0)
    return (float(np.percentile(rhos, 2.5)), float(np.percentile(rhos, 97.5))) if rhos.size else (np.nan, np.nan)


def write_correlations(out: Path, runs) -> dict:
    """DARLA's headline figure: does a more disentangled vision transfer better? One panel per score
    and outcome, one dot per run, Spearman's rho (with a bootstrap 95% interval over runs) over all runs
    that have the score; the task probe also against source return (does the probe predict what RL will
    learn?). Writes disentanglement_vs_transfer.png and correlations.json to ``out``; ``runs`` are
    RunResults."""
    titles = score_titles(runs)
    outcomes = {
        "source return": lambda r: r.mean_return("source"),
        "target return": lambda r: r.mean_return("target"),
        "transfer ratio": lambda r: r.transfer_ratio,
    }
    panels, correlations = [], {}
    for outcome, value in outcomes.items():
        for title in titles:
            scored = [r for r in runs if np.isfinite(r.metrics.get(title, np.nan)) and np.isfinite(value(r))]
            if len(scored) < 2:
                continue
            xs, ys = [r.metrics[title] for r in scored], [value(r) for r in scored]
            rho = rank_correlation(xs, ys)
            low, high = rho_interval(xs, ys, bootstrap_rng(f"{title}/{outcome}"))
            correlations.setdefault(title, {})[outcome] = {"spearman_rho": rho, "n": len(scored), "ci95": [low, high]}
            if outcome == "source return" and title not in dict(PROBE_SCORES).values():
                continue
            panels.append(
                {
                    "x": xs,
                    "y": ys,
                    "series": [r.vision_model for r in scored],
                    "xlabel": title,
                    "ylabel": outcome,
                    "title": f"{title}: rho = {rho:.2f} [{low:.2f}, {high:.2f}] (n={len(scored)})",
                }
            )
    if panels:
        save_figure(
            scatter_plot(
                panels, title="Disentanglement and task probe of the vision against transfer (one dot per run)"
            ),
            out / "disentanglement_vs_transfer.png",
        )
    write_json(out / "correlations.json", correlations)
    return correlations


ENV_CONFIGS = Path(str(importlib.resources.files("configs"))) / "env"


def ledger_roles(path: Path, domains: list[str], table: list[dict]) -> tuple[dict[str, str], dict[str, str]]:
    """A ledger's domain columns -> (roles, groups). The source columns are the first k, for a k whose
    means give every row's own source and target columns: the k of the shipped env config (configs/env)
    whose source domains those are, with its target groups, or else the only k that fits."""
    means = np.array([[float(row[d]) for d in domains] for row in table])
    stored = np.array([[float(row["source"]), float(row["target"])] for row in table])
    fits = [
        k
        for k in range(1, len(domains))
        if np.allclose(np.stack([means[:, :k].mean(axis=1), means[:, k:].mean(axis=1)], axis=1), stored, atol=1e-9)
    ]
    roles = lambda k: {d: "source" if i < k else "target" for i, d in enumerate(domains)}  # noqa: E731
    for config in sorted(ENV_CONFIGS.glob("*.yaml")):
        env = OmegaConf.load(config)  # read as data: nothing in it is instantiated
        k = len(env.get("source") or [])
        if k in fits and list(env.source) == domains[:k]:
            named = {d: g for g, members in (env.get("target_groups") or {}).items() for d in members}
            return roles(k), {d: named[d] for d in domains[k:] if d in named}
    if len(fits) != 1:
        raise ValueError(
            f"{path}: cannot tell its source columns from its target columns: the means of the first k domain "
            f"columns give every row's source and target for k in {fits} (one k must)"
        )
    return roles(fits[0]), {}


def read_ledger(path: Path) -> list[RunResult]:
    """A runs.csv (a leaderboard's, or a results ledger of rows appended from several) -> its runs, with
    what the tables and correlations need when the run directories are gone: per-domain returns, the
    scores (the shipped metrics' headline titles and the probe's), commit and path."""
    known = {t for keys in shipped_headlines().values() for t in keys.values()} | set(dict(PROBE_SCORES).values())
    with Path(path).open(newline="") as f:
        table = list(csv.DictReader(f))
    missing = {"vision_model", "seed", "source", "target", "transfer_ratio"} - set(table[0] if table else {})
    if missing:
        raise ValueError(f"{path}: not a runs.csv: no column {', '.join(sorted(missing))} (or no rows)")
    fixed = {"vision_model", "seed", "source", "target", "transfer_ratio", "commit", "path"}
    domains = [c for c in table[0] if c not in fixed | known]
    roles, groups = ledger_roles(path, domains, table)
    runs = [
        RunResult(
            Path(row.get("path") or ""),
            row["vision_model"],
            int(row["seed"]),
            {d: float(row[d]) for d in domains},
            roles,
            groups,
            {t: float(v) for t, v in row.items() if t in known and v not in ("", None)},
            commit=row.get("commit") or "",
        )
        for row in table
    ]
    return sorted(runs, key=lambda r: (r.vision_model, r.seed))


def correlations_text(correlations: dict) -> str:
    """correlations.json as a markdown table: one row per score, rho [95% interval] per outcome."""
    outcomes = list(dict.fromkeys(o for per in correlations.values() for o in per))
    lines = [f"| score | {' | '.join(outcomes)} |", "|---" * (len(outcomes) + 1) + "|"]
    for title, per in correlations.items():
        cells = [
            f"{per[o]['spearman_rho']:.2f} [{per[o]['ci95'][0]:.2f}, {per[o]['ci95'][1]:.2f}] (n={per[o]['n']})"
            if o in per
            else ""
            for o in outcomes
        ]
        lines.append(f"| {title} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``python -m darla.stage leaderboard <comparison dir>``: re-make the leaderboard from the raw files;
    ``leaderboard <runs.csv>``: the same tables, plots and correlations of a results ledger's rows, beside it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1 or argv[0].startswith("-"):
        raise SystemExit(
            "usage: python -m darla.stage leaderboard <comparison directory, e.g. runs/compare_collect_good_objects>"
            " | <runs.csv ledger, e.g. results/runs.csv>"
        )
    target = Path(argv[0])
    try:
        if target.suffix == ".csv":
            if not target.is_file():
                raise FileNotFoundError(f"{target} is not a file")
            write_leaderboard(target.parent, target.name, read_ledger(target))
        else:
            build_leaderboard(target)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"darla leaderboard: error: {err}") from None
    out = target.parent if target.suffix == ".csv" else target
    print((out / "leaderboard.md").read_text())
    print(correlations_text(read_json(out / "correlations.json")))
