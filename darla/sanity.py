"""Sanity flags: results that are numbers but may mean nothing.

A policy that ignores its input plays the same episodes everywhere (ratio 1.00, an interval of
zero width); a vision whose code does not depend on the frame gives every policy the same input.
Each function returns ``{flag: explanation}`` for the flags a result raises (empty when none),
and the reports print them above their tables.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

INACTIVE_KL = 0.01  # nats: a latent whose KL to the prior stays below this carries no information
INACTIVE_VARIANCE = 1e-6  # the same for a deterministic code's variance over frames
FLAT_RECONSTRUCTION = 0.05  # reconstructions varying less than 5% as much as their inputs do ignore them


def vision_flags(
    kl_per_dim: Sequence[float],
    stochastic: bool,
    input_std: float | None = None,
    reconstruction_std: float | None = None,
) -> dict[str, str]:
    """Flags of a trained vision model from its diagnostics on a sample of frames.

    ``kl_per_dim``: KL to the prior per latent (``stochastic``) or the code's variance per dimension;
    ``input_std`` / ``reconstruction_std``: the mean over pixels of the std over frames.
    """
    flags = {}
    kl = np.asarray(kl_per_dim, float)
    threshold = INACTIVE_KL if stochastic else INACTIVE_VARIANCE
    if kl.size and np.all(kl < threshold):
        what = "KL to the prior" if stochastic else "code variance over frames"
        flags["latents_all_inactive"] = (
            f"every latent's {what} is below {threshold:g} (largest {kl.max():.3g}): "
            f"the code does not depend on the frame, so no policy can read anything from it"
        )
    if (
        input_std is not None
        and reconstruction_std is not None
        and input_std > 0
        and reconstruction_std < FLAT_RECONSTRUCTION * input_std
    ):
        flags["reconstructions_input_independent"] = (
            f"reconstructions vary {reconstruction_std:.4f} over frames against {input_std:.4f} for the frames "
            f"themselves: the model draws about the same image whatever it sees (too short a training, or a "
            f"collapsed posterior)"
        )
    return flags


def episode_flags(episodes: Sequence[dict]) -> dict[str, str]:
    """Flags of one transfer run from its episodes (episodes.jsonl lines)."""
    flags = {}
    policy = [e for e in episodes if e["policy"] == "policy"]
    source = [e["return"] for e in policy if e["role"] == "source"]
    random_source = [e["return"] for e in episodes if e["policy"] == "random" and e["role"] == "source"]
    if source and random_source and np.mean(source) <= np.mean(random_source):
        flags["at_or_below_random_on_source"] = (
            f"the policy's source mean return {np.mean(source):.3f} is not above "
            f"the random policy's {np.mean(random_source):.3f} on the same "
            f"episodes: it has not learned the task"
        )
    by_domain: dict[str, list] = {}
    for e in policy:
        by_domain.setdefault(e["domain"], []).append((e.get("seed"), e["return"], e.get("length")))
    series = [sorted(v, key=lambda t: (t[0] is None, t[0])) for v in by_domain.values()]
    if len(series) > 1 and all(s == series[0] for s in series[1:]):
        flags["identical_across_domains"] = (
            f"every domain's episodes (returns and lengths, seed by seed) are "
            f"identical in all {len(series)} domains: the policy's behaviour does "
            f"not depend on what it sees, so ratios of 1.00 mean nothing"
        )
    returns = [e["return"] for e in policy]
    if len(returns) > 1 and len(set(returns)) == 1:
        flags["zero_spread"] = (
            f"every one of the {len(returns)} episodes returned {returns[0]:g}: statistics over them have zero width"
        )
    return flags


def seed_flags(per_seed_returns: dict[int, dict[str, float]]) -> dict[str, str]:
    """Flags of one model's runs in a comparison: seed -> {domain: mean return}."""
    flags = {}
    values = list(per_seed_returns.values())
    if len(values) > 1 and all(v == values[0] for v in values[1:]):
        flags["identical_across_seeds"] = (
            f"all {len(values)} seeds returned exactly the same in every domain: the "
            f"seeds do not vary what they should (a policy or vision that ignores "
            f"its input), and the interval has no meaning"
        )
    return flags


def interval_flags(row: dict, columns: Sequence[str]) -> dict[str, str]:
    """A leaderboard row whose bootstrap intervals have zero width although it has several seeds."""
    flat = [c for c in columns if c in row and row["seeds"] > 1 and row[c]["ci_low"] == row[c]["ci_high"]]
    if flat:
        return {
            "degenerate_interval": f"the 95% interval of {', '.join(flat)} has zero width over {row['seeds']} seeds"
        }
    return {}
