"""Every disentanglement metric on fixed codes: a before/after check for changes to vision_models/metrics.

    python benchmarks/metrics_switch.py --json /tmp/before.json                         # on the old code
    python benchmarks/metrics_switch.py --json /tmp/after.json --compare /tmp/before.json

Runs `vision_models.metrics.evaluate` with configs/metric/'s sizes and configs/darla.yaml's seed on
fixed codes, plus UDR (Spearman and Lasso) and darla.evaluation.rank_correlation, and prints one
table (with --compare, the saved values and the difference). Code sets:

- synthetic_disentangled: a (3, 4, 5, 6) factor grid, each factor scaled to [0, 1] in its own
  latent, one pure-noise latent, Gaussian noise of std 0.05 on every latent; posterior std 0.05.
- synthetic_rotated: the same codes times a fixed random rotation (entangled, equally informative).
- real (with --see-dir): the factor grid of a trained see run, encoded once on the CPU and cached in
  --cache (an .npz), so that runs on different code encode nothing and compare identical codes.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from darla.evaluation import rank_correlation  # noqa: E402
from vision_models.metrics import FactorCodes, encode_grid, evaluate  # noqa: E402
from vision_models.metrics.udr import compute_udr, mean_kl_per_latent  # noqa: E402


def synthetic_codes() -> dict[str, FactorCodes]:
    sizes = (3, 4, 5, 6)
    rng = np.random.default_rng(0)
    grid = np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)
    clean = np.concatenate([grid / (np.array(sizes) - 1), rng.normal(size=(len(grid), 1))], axis=1)
    mean = clean + 0.05 * rng.normal(size=clean.shape)
    rotation, _ = np.linalg.qr(rng.normal(size=(mean.shape[1], mean.shape[1])))
    logvar = np.full(mean.shape, 2 * math.log(0.05), np.float32)
    names = ("a", "b", "c", "d")
    return {
        "synthetic_disentangled": FactorCodes(names, sizes, mean.astype(np.float32), logvar),
        "synthetic_rotated": FactorCodes(names, sizes, (mean @ rotation).astype(np.float32), logvar),
    }


def real_codes(see_dir: Path, cache: Path) -> FactorCodes:
    if not cache.exists():
        import torch

        try:
            from darla.runs import load_vision_model
        except ImportError:
            from darla.see import load_vision_model
        try:
            from darla.vision_report import make_factor_dataset, representation_function
        except ImportError:
            from darla.diagnose import make_factor_dataset, representation_function

        model, manifest = load_vision_model(see_dir)
        dataset = make_factor_dataset(manifest["factor_dataset"], see_dir / "manifest.json")
        codes = encode_grid(dataset, representation_function(model, torch.device("cpu"), 512), batch_size=512)
        np.savez(
            cache,
            mean=codes.mean,
            **({} if codes.logvar is None else {"logvar": codes.logvar}),
            factor_names=np.array(codes.factor_names),
            factor_sizes=np.array(codes.factor_sizes),
        )
    data = np.load(cache)
    logvar = data["logvar"] if "logvar" in data else None
    names, sizes = tuple(str(n) for n in data["factor_names"]), tuple(int(s) for s in data["factor_sizes"])
    return FactorCodes(names, sizes, data["mean"], logvar)


def udr_scores(codes: FactorCodes) -> dict[str, float]:
    """UDR of four 'models' on the grid's images: the codes, a monotone reparametrisation, a rotation, noise."""
    rng = np.random.default_rng(1)
    mean = codes.mean.astype(np.float64)
    rotation, _ = np.linalg.qr(rng.normal(size=(mean.shape[1], mean.shape[1])))
    models = [mean, np.exp(mean[:, ::-1] / mean.std(axis=0)[::-1]), mean @ rotation, rng.normal(size=mean.shape)]
    kl = None
    if codes.logvar is not None:
        own = mean_kl_per_latent(mean, codes.logvar)
        kl = [own, own[::-1], np.ones(mean.shape[1]), np.ones(mean.shape[1])]
    scores = {}
    for correlation in ("spearman", "lasso"):
        result = compute_udr(models, np.random.default_rng(2), kl_per_dim=kl, correlation=correlation)
        for name, value in result.items():
            scores[f"udr_{correlation}.{name.removeprefix('udr_')}"] = value
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--see-dir", type=Path, default=None, help="a trained see run whose factor grid to encode")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/metrics_switch_real_codes.npz"))
    parser.add_argument("--json", type=Path, default=None, help="write the values here")
    parser.add_argument("--compare", type=Path, default=None, help="values of an earlier run, to print side by side")
    args = parser.parse_args()

    settings = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "darla.yaml").metrics)
    if (ROOT / "configs" / "metric").is_dir():  # the metric config group, as see composes it
        settings["compute"] = {
            path.stem: OmegaConf.to_container(OmegaConf.load(path))
            for path in sorted((ROOT / "configs" / "metric").glob("*.yaml"))
        }
    # (on a checkout from before the config group, darla.yaml's own metrics.compute is used)
    code_sets = synthetic_codes()
    if args.see_dir is not None:
        code_sets["real"] = real_codes(args.see_dir, args.cache)

    values: dict[str, dict[str, float]] = {}
    seconds: dict[str, dict[str, float]] = {}
    for name, codes in code_sets.items():
        results = evaluate(codes, settings["compute"], seed=settings["seed"])
        values[name], seconds[name] = {}, {}
        for metric, scores in results.items():
            seconds[name][metric] = scores.get("seconds", float("nan"))
            for key, value in scores.items():
                if key != "seconds" and not isinstance(value, str):
                    values[name][f"{metric}.{key}"] = value
        values[name].update(udr_scores(codes))
        print(f"done: {name}", flush=True)

    x = np.random.default_rng(3).integers(0, 5, 40).astype(float)  # ties on purpose
    y = x + np.random.default_rng(4).normal(size=40)
    values["rank_correlation"] = {"ties": rank_correlation(x, y), "constant": rank_correlation(np.ones(5), x[:5])}

    before = json.loads(args.compare.read_text())["values"] if args.compare else None
    print(
        f"\n{'code set':<24}{'metric.key':<56}{'value':>14}" + (f"{'before':>14}{'after-before':>14}" if before else "")
    )
    for name, scores in values.items():
        for key, value in scores.items():
            line = f"{name:<24}{key:<56}{value:>14.6f}"
            if before:
                old = before.get(name, {}).get(key, float("nan"))
                line += f"{old:>14.6f}{value - old:>14.2e}"
            print(line)
    print(f"\n{'code set':<24}{'metric':<30}{'seconds':>10}")
    for name, metrics in seconds.items():
        for metric, value in metrics.items():
            print(f"{name:<24}{metric:<30}{value:>10.2f}")
    if args.json:
        args.json.write_text(json.dumps({"values": values, "seconds": seconds}, indent=1))


if __name__ == "__main__":
    main()
