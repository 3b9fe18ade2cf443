"""Stage 3, transfer: evaluate the trained policy, unchanged, on source and target domains.

Policy and encoder are loaded exactly as act trained them (parameters only, checked against
their manifests' hashes). Every domain plays the same fixed seeds; a uniformly random policy
plays them too, for scale. Outputs in runs/<name>/transfer/: episodes.jsonl (the raw results,
one line per episode), summary.json and report.md (derived from episodes.jsonl and rebuilt by
``summarize``), manifest.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from darla.artifacts import (
    atomic_write,
    find_parent,
    read_jsonl,
    run_dir,
    versions,
    write_json,
    write_jsonl,
    write_manifest,
)
from darla.config import check_env, domain_settings, domains, plain, prepare, resolve_device, start_run
from darla.errors import UserError, user_facing
from darla.evaluation import describe, random_act, run_episodes
from darla.policy_inputs import PolicyInput
from darla.runs import load_policy, read_act_run
from darla.sanity import episode_flags

log = logging.getLogger("transfer")  # Hydra prints it as [transfer] (configs/hydra/default.yaml)


def run(cfg: DictConfig) -> Path:
    prepare(cfg)
    out = run_dir(cfg.runs_dir, cfg.name, "transfer")
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.policy_threads)
    act_dir = find_parent(cfg.transfer.act_run, cfg.runs_dir, "act")
    act_manifest = read_act_run(act_dir)
    view = PolicyInput.of_act_run(act_dir, act_manifest)
    source = domains(cfg, "source")
    check_env(act_dir, act_manifest, cfg, "source_domains", [d.name for d in source])
    evaluated = [("source", d) for d in source] + [("target", d) for d in domains(cfg, "targets")]
    groups = target_groups(cfg)
    settings = {
        "domains": domain_settings([d for _, d in evaluated]),
        "target_groups": groups,
        "act_hash": act_manifest["content_hash"],
        "transfer": {k: v for k, v in plain(cfg.transfer).items() if k != "act_run"},
        "deterministic": cfg.act.deterministic,
    }
    if start_run(out, settings, cfg):
        log.info(f"{out} is finished with these settings; nothing to do")
        return out

    t0 = time.perf_counter()
    episodes_file = out / "episodes.jsonl"
    lines = []
    # One vector env for every domain: its workers switch domain when told (DomainMixture).
    venv = view.vec_env([d for _, d in evaluated], min(cfg.num_envs, cfg.transfer.episodes), cfg.vec_env, None, device)
    try:
        agent = load_policy(act_dir, act_manifest, view, venv, device)
        players = {"policy": lambda obs: agent.predict(obs, deterministic=cfg.act.deterministic)[0]}
        if cfg.transfer.random_policy:
            players["random"] = random_act(venv)
        for role, domain in evaluated:
            for player, act in players.items():
                for e in run_episodes(venv, act, cfg.transfer.seed, cfg.transfer.episodes, domain=domain.name):
                    group = {"group": groups[domain.name]} if domain.name in groups else {}
                    lines.append({"domain": domain.name, "role": role, **group, "policy": player, **e})
            mean = np.mean([r["return"] for r in lines if r["domain"] == domain.name and r["policy"] == "policy"])
            log.info(f"{role} {domain.name}: mean return {mean:.3f}")
    finally:
        venv.close()
    write_jsonl(episodes_file, lines)
    summarize(out, act_manifest)
    write_manifest(
        out,
        {
            "stage": "transfer",
            "act_dir": str(act_dir),
            "act_hash": act_manifest["content_hash"],
            "vision_model": act_manifest["vision_model"],
            "label": cfg.label,
            "agent": act_manifest["agent"]["name"],
            "env_id": cfg.env.id,
            "env_name": cfg.env.name,
            "seconds": time.perf_counter() - t0,
            "versions": versions(),
        },
    )
    log.info(f"done: {out}\n" + (out / "report.md").read_text())
    return out


def target_groups(cfg: DictConfig) -> dict[str, str]:
    """Each grouped target domain's group, from ``env.target_groups`` (group -> domains), e.g. the
    generalisation literature's ood1 (values the vision saw, the policy did not) and ood2 (neither saw)."""
    table = plain(cfg.env.get("target_groups")) or {}
    groups: dict[str, str] = {}
    for group, names in table.items():
        for name in names:
            if name not in cfg.env.domains:
                raise UserError(
                    f"env.target_groups.{group} lists {name!r}, which is not a domain of env "
                    f"{cfg.env.name!r}; defined domains: {sorted(cfg.env.domains)}"
                )
            if name not in cfg.env.targets:
                continue  # a grouped domain left out of this run's targets
            if name in groups:
                raise UserError(f"env.target_groups puts {name!r} in both {groups[name]!r} and {group!r}")
            groups[name] = group
    return groups


def summarize(out: Path, act_manifest: dict | None = None) -> dict:
    """Derive summary.json and report.md from episodes.jsonl (can be re-run at any time)."""
    episodes = read_jsonl(out / "episodes.jsonl")
    domains_in_order = list(dict.fromkeys(e["domain"] for e in episodes))
    per_domain = {}
    for name in domains_in_order:
        rows = [e for e in episodes if e["domain"] == name]
        per_domain[name] = {
            "role": rows[0]["role"],
            "policy": describe([e["return"] for e in rows if e["policy"] == "policy"]),
        }
        randoms = [e["return"] for e in rows if e["policy"] == "random"]
        if randoms:
            per_domain[name]["random"] = describe(randoms)
    source = [e["return"] for e in episodes if e["role"] == "source" and e["policy"] == "policy"]
    source_stats = describe(source)
    for name, entry in per_domain.items():
        entry["transfer_ratio"] = entry["policy"]["mean"] / source_stats["mean"] if source_stats["mean"] else None
    targets = [e["return"] for e in episodes if e["role"] == "target" and e["policy"] == "policy"]
    summary = {
        "source": source_stats,
        "target": describe(targets) if targets else None,
        "transfer_ratio": (np.mean(targets) / source_stats["mean"]) if targets and source_stats["mean"] else None,
        "groups": {},
        "domains": per_domain,
        "flags": episode_flags(episodes),
    }
    for group in dict.fromkeys(e["group"] for e in episodes if "group" in e):
        returns = [e["return"] for e in episodes if e.get("group") == group and e["policy"] == "policy"]
        summary["groups"][group] = {
            **describe(returns),
            "transfer_ratio": np.mean(returns) / source_stats["mean"] if source_stats["mean"] else None,
        }
    write_json(out / "summary.json", summary)

    title = f"{act_manifest['vision_model']} + {act_manifest['agent']['name']}" if act_manifest else out.parent.name
    group_of = {e["domain"]: e["group"] for e in episodes if "group" in e}
    rows = ["| domain | role | mean ± std | IQM | ratio to source | random policy |", "|---|---|---|---|---|---|"]
    for name, entry in per_domain.items():
        p, r = entry["policy"], entry.get("random")
        random_mean = f"{r['mean']:.2f}" if r else "–"
        ratio = f"{entry['transfer_ratio']:.2f}" if entry["transfer_ratio"] is not None else "–"
        role = f"{entry['role']} ({group_of[name]})" if name in group_of else entry["role"]
        rows.append(
            f"| {name} | {role} | {p['mean']:.2f} ± {p['std']:.2f} | {p['iqm']:.2f} | {ratio} | {random_mean} |"
        )
    group_lines = "".join(
        f"- {group}: mean return {g['mean']:.3f} over {g['episodes']} episodes"
        + (f", ratio to source {g['transfer_ratio']:.3f}\n" if g["transfer_ratio"] is not None else "\n")
        for group, g in summary["groups"].items()
    )
    ratio = summary["transfer_ratio"]
    ratio_text = f"{ratio:.3f}" if ratio is not None else "undefined (source mean return is 0)"
    warnings = "".join(f"- **{flag}**: {why}\n" for flag, why in summary["flags"].items())
    report = (
        f"# Transfer report: {title}\n\n"
        + (f"Warnings:\n{warnings}\n" if warnings else "")
        + f"Source mean return {source_stats['mean']:.3f} (IQM {source_stats['iqm']:.3f}, "
        + f"{source_stats['episodes']} episodes); "
        + (
            f"target mean return {summary['target']['mean']:.3f}; target/source ratio {ratio_text}.\n\n"
            if targets
            else "\n\n"
        )
        + (group_lines + "\n" if group_lines else "")
        + "\n".join(rows)
        + "\n"
    )
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(report))
    return summary


@hydra.main(config_path="../configs", config_name="transfer", version_base="1.3")
@user_facing("transfer")
def main(cfg: DictConfig) -> None:
    run(cfg)
