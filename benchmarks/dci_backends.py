"""DCI's two gradient-boosting backends at the default sizes: is the fast one worth keeping?

    python benchmarks/dci_backends.py                                   # the synthetic code sets
    python benchmarks/dci_backends.py --see-dir runs/<dsprites run>/see # also a see run's real codes

compute_dci(backend="fast") fits darla's histogram gradient-boosted trees
(vision_models/metrics/gradient_boosting.py); backend="reference" fits scikit-learn's
GradientBoostingClassifier, disentanglement_lib's own classifier. Both run on the same codes with
the same rng and configs/metric/dci.yaml's sizes (num_train 10,000, num_test 5,000). The table
gives each backend's seconds and scores and the ratio of the seconds; run it alone on the machine,
since the timings are wall-clock. Code sets as in metrics_switch.py (the real codes are cached).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.metrics_switch import real_codes, synthetic_codes  # noqa: E402
from vision_models.metrics.dci import compute_dci  # noqa: E402

SCORES = ("disentanglement", "completeness", "informativeness_test")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--see-dir", type=Path, default=None, help="a trained see run whose factor grid to encode")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/metrics_switch_real_codes.npz"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sizes = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "metric" / "dci.yaml"))
    sizes = {k: sizes[k] for k in ("num_train", "num_test")}
    code_sets = synthetic_codes()
    if args.see_dir is not None:
        code_sets["real"] = real_codes(args.see_dir, args.cache)

    print(f"DCI at num_train {sizes['num_train']}, num_test {sizes['num_test']}, seed {args.seed}")
    header = ["codes", "latents x factors", "backend", "seconds", *SCORES]
    rows = [header]
    for name, codes in code_sets.items():
        seconds = {}
        for backend in ("fast", "reference"):
            start = time.perf_counter()
            scores = compute_dci(codes, np.random.default_rng(args.seed), backend=backend, **sizes)
            seconds[backend] = time.perf_counter() - start
            shape = f"{codes.num_latents} x {codes.num_factors}"
            rows.append([name, shape, backend, f"{seconds[backend]:.1f}", *(f"{scores[s]:.3f}" for s in SCORES)])
        rows.append([name, "", "reference / fast", f"{seconds['reference'] / seconds['fast']:.1f}x", "", "", ""])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
