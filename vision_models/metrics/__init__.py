"""Disentanglement metrics: pure functions of a factor grid's codes (codes.FactorCodes) and an rng.

Each metric module has a public ``compute_<metric>(codes, rng, **sizes) -> dict[str, float]`` that
samples from the encoded grid, and private arithmetic on (codes, factors) arrays that the oracle
tests exercise. Defaults follow disentanglement_lib. A new metric is one function (here or in a
package of your own) and one YAML in configs/metric/ naming it by ``_target_``, with its headline
scores and sample sizes; `evaluate` runs any selection of them on one encoded grid.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Mapping

import numpy as np

from vision_models.metrics.codes import FactorCodes, NotApplicable, encode_grid


def metric_function(target: str):
    """The metric function a dotted ``module.function`` path names (a config's ``_target_``)."""
    module, _, function = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"metric _target_ {target!r} names no function ({err})") from None


def evaluate(codes: FactorCodes, settings: Mapping[str, Mapping[str, Any]], seed: int) -> dict[str, dict]:
    """Run each metric of ``settings`` on ``codes``: name -> {"_target_": "module.function", "headline":
    {...} (for tables, not passed on), **keyword arguments} (configs/metric/<name>.yaml).

    Every metric gets its own rng derived from ``seed`` and its name, so adding or removing one
    metric does not change the others' numbers. Each result carries the seconds it took.
    """
    results = {}
    for name, spec in settings.items():
        kwargs = {k: v for k, v in spec.items() if k not in ("_target_", "headline")}
        function = metric_function(spec["_target_"])
        rng = np.random.default_rng([seed, *name.encode()])
        start = time.perf_counter()
        try:
            scores = function(codes, rng, **kwargs)
        except NotApplicable as why:
            results[name] = {"skipped": str(why)}
            continue
        results[name] = {**{k: float(v) for k, v in scores.items()}, "seconds": time.perf_counter() - start}
    return results


__all__ = ["FactorCodes", "NotApplicable", "encode_grid", "evaluate", "metric_function"]
