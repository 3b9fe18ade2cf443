"""The task probe: can the quantities a policy needs be read from a representation?

Disentanglement metrics ask whether the generative factors of a dataset are separated in the
code; a policy needs something else — which objects are good, where they are, where it faces.
Here a linear model and a small MLP (scikit-learn) are trained to predict each task quantity from
the code of frames of the vision domains, and scored on held-out episodes and on each target
domain's frames. A score is 1 for a perfect prediction and 0 at chance: R² clipped to [0, 1] for a
real quantity, balanced accuracy rescaled from chance for a discrete one. The summary of a split is
the mean MLP score over the quantities.

Pure functions of arrays and a seed; which quantities an env has is the env's business
(``task_quantities`` in its env config, e.g. envs/collect_good_objects.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REGRESSION, CLASSIFICATION = "regression", "classification"
MIN_SAMPLES = 10  # fewer frames where a quantity is defined: no score for that split


@dataclass
class Quantity:
    """One task quantity over N frames: its kind, its value per frame, and where it is defined."""

    kind: str
    values: np.ndarray
    mask: np.ndarray | None = None

    def defined(self) -> np.ndarray:
        return np.ones(len(self.values), bool) if self.mask is None else np.asarray(self.mask, bool)


def state_quantities(states: np.ndarray) -> dict[str, Quantity]:
    """The default quantities of an env that reports a state vector: each varying dimension."""
    states = np.asarray(states, float)
    return {
        f"state_{i}": Quantity(REGRESSION, states[:, i]) for i in range(states.shape[1]) if np.ptp(states[:, i]) > 0
    }


def _models(kind: str, seed: int, hidden: int):
    scaled = lambda model: make_pipeline(StandardScaler(), model)  # noqa: E731
    if kind == REGRESSION:
        return {
            "linear": scaled(Ridge(alpha=1.0)),
            "mlp": scaled(
                MLPRegressor(hidden_layer_sizes=(hidden,), max_iter=400, early_stopping=True, random_state=seed)
            ),
        }
    return {
        "linear": scaled(LogisticRegression(max_iter=2000)),
        "mlp": scaled(
            MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=400, early_stopping=True, random_state=seed)
        ),
    }


def _learnable(kind: str, targets: np.ndarray) -> bool:
    """Whether a probe can be fitted: the quantity varies and, if discrete, every class has two
    examples at least (the MLP's early stopping holds out a stratified tenth)."""
    values, counts = np.unique(targets, return_counts=True)
    return len(values) >= 2 and (kind == REGRESSION or counts.min() >= 2)


def _score(kind: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    if kind == REGRESSION:
        return float(np.clip(r2_score(truth, predicted), 0.0, 1.0))
    classes = len(np.unique(truth))
    accuracy = balanced_accuracy_score(truth, predicted)
    return float(np.clip((accuracy - 1.0 / classes) / (1.0 - 1.0 / classes), 0.0, 1.0))


def probe_scores(
    train_codes: np.ndarray,
    train: Mapping[str, Quantity],
    tests: Mapping[str, tuple[np.ndarray, Mapping[str, Quantity]]],
    seed: int = 0,
    num_train: int = 5000,
    hidden: int = 64,
) -> dict:
    """Fit each quantity's probes on ``train_codes`` and score them on every split of ``tests``.

    Returns ``{"quantities": {name: {"kind", "linear": {split: score}, "mlp": {split: score}}},
    "summary": {split: mean MLP score}}``; a score is None where a split has too few frames (or
    one class) for that quantity.
    """
    rng = np.random.default_rng(seed)
    train_codes = np.asarray(train_codes, float)
    result: dict = {"quantities": {}, "summary": {}}
    for name, quantity in train.items():
        where = np.flatnonzero(quantity.defined())
        if len(where) > num_train:
            where = np.sort(rng.choice(where, num_train, replace=False))
        targets = np.asarray(quantity.values)[where]
        entry: dict = {"kind": quantity.kind, "linear": {}, "mlp": {}}
        if len(where) < MIN_SAMPLES or not _learnable(quantity.kind, targets):
            result["quantities"][name] = entry  # nothing to learn: it never varies where it is defined
            continue
        for probe, model in _models(quantity.kind, seed, hidden).items():
            with warnings.catch_warnings():  # an MLP stopped at max_iter is still a fair probe
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(train_codes[where], targets)
            for split, (codes, quantities) in tests.items():
                test = quantities.get(name)
                defined = np.flatnonzero(test.defined()) if test is not None else np.array([], int)
                truth = np.asarray(test.values)[defined] if test is not None else defined
                if len(defined) < MIN_SAMPLES or (quantity.kind == CLASSIFICATION and len(np.unique(truth)) < 2):
                    entry[probe][split] = None
                    continue
                predicted = model.predict(np.asarray(codes, float)[defined])
                entry[probe][split] = _score(quantity.kind, truth, predicted)
        result["quantities"][name] = entry
    for split in tests:
        scores = [e["mlp"].get(split) for e in result["quantities"].values()]
        scores = [s for s in scores if s is not None]
        result["summary"][split] = float(np.mean(scores)) if scores else None
    return result


def latent_importance(
    train_codes: np.ndarray,
    train: Mapping[str, Quantity],
    test_codes: np.ndarray,
    test: Mapping[str, Quantity],
    seed: int = 0,
    num_train: int = 5000,
    hidden: int = 64,
    repeats: int = 5,
) -> dict[str, np.ndarray]:
    """How much each latent matters to each quantity's MLP probe: the drop of its held-out score
    when that latent is shuffled across frames (scikit-learn's permutation importance), (D,) per quantity.
    A latent no quantity needs scores about 0 everywhere."""
    from sklearn.inspection import permutation_importance

    rng = np.random.default_rng(seed)
    train_codes, test_codes = np.asarray(train_codes, float), np.asarray(test_codes, float)
    importance = {}
    for name, quantity in train.items():
        where = np.flatnonzero(quantity.defined())
        if len(where) > num_train:
            where = np.sort(rng.choice(where, num_train, replace=False))
        targets = np.asarray(quantity.values)[where]
        held = test.get(name)
        defined = np.flatnonzero(held.defined()) if held is not None else np.array([], int)
        if len(where) < MIN_SAMPLES or not _learnable(quantity.kind, targets) or len(defined) < MIN_SAMPLES:
            continue
        truth = np.asarray(held.values)[defined]
        if quantity.kind == CLASSIFICATION and len(np.unique(truth)) < 2:
            continue
        model = _models(quantity.kind, seed, hidden)["mlp"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(train_codes[where], targets)
        scoring = "r2" if quantity.kind == REGRESSION else "balanced_accuracy"
        result = permutation_importance(
            model, test_codes[defined], truth, scoring=scoring, n_repeats=repeats, random_state=seed
        )
        importance[name] = np.maximum(result.importances_mean, 0.0)
    return importance
