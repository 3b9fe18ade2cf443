"""The command line: ``python -m darla.stage see|act|transfer|all|... [hydra overrides]``.

Hydra has no sub-commands, so the stage word is taken off argv here and the rest is handed to
that stage's Hydra entry point (overrides, ``-m`` multiruns and ``--help`` work as usual).
"""

from __future__ import annotations

import difflib
import importlib
import sys

STAGES = {
    "see": ("darla.see", "collect exploration frames, train the vision model, diagnose it"),
    "act": ("darla.act", "train PPO or DQN on the frozen latents in the source domains"),
    "transfer": ("darla.transfer", "evaluate the policy, unchanged, on source and target domains"),
    "diagnose": ("darla.diagnose", "rewrite a see run's pictures and metrics: diagnose <see run> [key=value ...]"),
    "video": ("darla.video", "film a trained policy playing: video <run> [video.domains=[...] video.format=mp4 ...]"),
    "scan": ("darla.scan", "SCAN: symbols grounded in a see run's latents: scan see_run=<see run> [scan.out=<dir>]"),
    "all": ("darla.pipeline", "see, act and transfer in order, with the same overrides"),
    "compare": ("darla.compare", "all for every vision model x seed (a multirun), then the leaderboard"),
    "leaderboard": ("darla.leaderboard", "re-make a leaderboard: leaderboard <dir>; a ledger's rhos: <runs.csv>"),
}


def usage() -> str:
    lines = [f"  {name:<9} {doc}" for name, (_, doc) in STAGES.items()]
    return "usage: python -m darla.stage STAGE [key=value ...]\nstages:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    stage = argv.pop(0)
    if stage not in STAGES:
        nearest = difflib.get_close_matches(stage, STAGES, n=1)
        hint = f" (did you mean {nearest[0]!r}?)" if nearest else ""
        print(f"darla: unknown stage {stage!r}{hint}; valid stages: {', '.join(STAGES)}\n\n{usage()}", file=sys.stderr)
        sys.exit(2)
    if stage == "diagnose" and argv and "=" not in argv[0] and not argv[0].startswith("-"):
        # `diagnose runs/x/see`: the run is positional, and Hydra's run directory is that run's, so
        # diagnosing another run leaves no directory of its own behind.
        argv[:1] = [f"see_run='{argv[0]}'", f"hydra.run.dir='{argv[0]}'"]
    sys.argv = [f"darla.stage {stage}", *argv]
    importlib.import_module(STAGES[stage][0]).main()


if __name__ == "__main__":
    main()
