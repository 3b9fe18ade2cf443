"""Disentanglement metrics: pure functions of a factor grid's codes (codes.FactorCodes) and an rng.

Each metric module has a public ``compute_<metric>(codes, rng, **sizes) -> dict[str, float]`` that
samples from the encoded grid, and private arithmetic on (codes, factors) arrays that the oracle
tests exercise. Defaults follow disentanglement_lib. A new metric is one module here and one line
in METRICS; `evaluate` runs any selection of them on one encoded grid.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Mapping

import numpy as np

from vision_models.metrics.codes import FactorCodes, encode_grid

# name -> "module:function". Imported on use, so a run pays only for the metrics it asks for.
METRICS = {
    "beta_vae_score": "vision_models.metrics.beta_vae_score:compute_beta_vae_score",
    "factor_vae_score": "vision_models.metrics.factor_vae_score:compute_factor_vae_score",
    "mig": "vision_models.metrics.mig:compute_mig",
    "sampled_mig": "vision_models.metrics.mig:compute_sampled_mig",
    "dci": "vision_models.metrics.dci:compute_dci",
    "sap": "vision_models.metrics.sap:compute_sap",
    "modularity_explicitness": "vision_models.metrics.modularity_explicitness:compute_modularity_explicitness",
    "gaussian_total_correlation": "vision_models.metrics.total_correlation:compute_gaussian_total_correlation",
}

# The one number each metric is known by (metric, key in its result, short title), for tables and
# plots that put several models side by side.
HEADLINE_SCORES = (
    ("beta_vae_score", "eval_accuracy", "BetaVAE"),
    ("factor_vae_score", "eval_accuracy", "FactorVAE"),
    ("mig", "mig", "MIG"),
    ("sampled_mig", "sampled_mig", "MIG (Chen)"),
    ("dci", "disentanglement", "DCI D"),
    ("dci", "completeness", "DCI C"),
    ("dci", "informativeness_test", "DCI I"),
    ("sap", "sap", "SAP"),
    ("modularity_explicitness", "modularity", "Modularity"),
    ("modularity_explicitness", "explicitness_test", "Explicit."),
    ("gaussian_total_correlation", "gaussian_total_correlation", "Gauss. TC"),
)


def metric_function(name: str):
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(METRICS)}")
    module, function = METRICS[name].split(":")
    return getattr(importlib.import_module(module), function)


def evaluate(codes: FactorCodes, settings: Mapping[str, Mapping[str, Any] | None], seed: int) -> dict[str, dict]:
    """Run each metric named in ``settings`` (name -> keyword arguments) on ``codes``.

    Every metric gets its own rng derived from ``seed`` and its name, so adding or removing one
    metric does not change the others' numbers. Each result carries the seconds it took.
    """
    results = {}
    for name, kwargs in settings.items():
        function = metric_function(name)
        if name == "sampled_mig" and codes.logvar is None:
            results[name] = {"skipped": "the model is deterministic (no posterior variance)"}
            continue
        rng = np.random.default_rng([seed, *name.encode()])
        start = time.perf_counter()
        scores = function(codes, rng, **dict(kwargs or {}))
        results[name] = {**{k: float(v) for k, v in scores.items()}, "seconds": time.perf_counter() - start}
    return results


__all__ = ["FactorCodes", "METRICS", "encode_grid", "evaluate", "metric_function"]
