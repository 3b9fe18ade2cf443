"""SAP, the Separated Attribute Predictability score (Kumar et al., ICLR 2018), as disentanglement_lib
computes it.

Score matrix S (D latents x K factors): how well each single latent predicts each factor. For
discrete factors (the default) S[j, k] is the test accuracy of a linear SVM trained on latent j
alone to predict factor k's class (scikit-learn's LinearSVC with C=0.01 and balanced class
weights); for continuous factors it is the squared correlation of latent j and factor k on the
training points. SAP is the mean over factors of the gap between the two highest scores in the
factor's column: high when every factor is predicted by one latent much better than by any other.

The SVM is `LinearSVC1D` below: LinearSVC's objective on one feature, minimised exactly (no
scikit-learn needed).
"""

from __future__ import annotations

import numpy as np

from vision_models.metrics.codes import FactorCodes

# Below this variance a latent is constant: its squared correlation with any factor is taken as 0.
_MIN_VARIANCE = 1e-12


def compute_sap(
    codes: FactorCodes,
    rng: np.random.Generator,
    num_train: int = 10000,
    num_test: int = 5000,
    continuous_factors: bool = False,
) -> dict[str, float]:
    """{"sap"} of the mean codes of ``num_train`` training and ``num_test`` test points drawn uniformly
    from the grid (the test points are drawn in either case, as the reference does, and are only used
    for discrete factors)."""
    for name, value in (("num_train", num_train), ("num_test", num_test)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    train_factors, train_codes = codes.sample(num_train, rng)
    test_factors, test_codes = codes.sample(num_test, rng)
    scores = _score_matrix(train_codes, train_factors, test_codes, test_factors, continuous_factors)
    return {"sap": _sap(scores)}


def _score_matrix(
    train_codes: np.ndarray,
    train_factors: np.ndarray,
    test_codes: np.ndarray,
    test_factors: np.ndarray,
    continuous_factors: bool,
) -> np.ndarray:
    """How well each latent alone predicts each factor: (D, K)."""
    num_latents, num_factors = train_codes.shape[1], train_factors.shape[1]
    scores = np.zeros((num_latents, num_factors))
    for latent in range(num_latents):
        for factor in range(num_factors):
            if continuous_factors:
                scores[latent, factor] = _squared_correlation(train_codes[:, latent], train_factors[:, factor])
            else:
                classifier = LinearSVC1D().fit(train_codes[:, latent], train_factors[:, factor])
                scores[latent, factor] = np.mean(classifier.predict(test_codes[:, latent]) == test_factors[:, factor])
    return scores


def _squared_correlation(code: np.ndarray, factor: np.ndarray) -> float:
    """cov(z, v)^2 / (var(z) var(v)); 0 where either does not vary."""
    covariance = np.cov(code.astype(np.float64), factor.astype(np.float64))
    if covariance[0, 0] <= _MIN_VARIANCE or covariance[1, 1] <= _MIN_VARIANCE:
        return 0.0
    return float(covariance[0, 1] ** 2 / (covariance[0, 0] * covariance[1, 1]))


def _sap(scores: np.ndarray) -> float:
    """Mean over factors (columns) of the gap between the best and the second-best latent's score."""
    if scores.ndim != 2 or scores.shape[0] < 2:
        raise ValueError(f"score matrix has shape {scores.shape}; SAP needs (D, K) with at least 2 latents")
    top_two = np.sort(scores, axis=0)[-2:]
    return float(np.mean(top_two[1] - top_two[0]))


class LinearSVC1D:
    """scikit-learn's ``LinearSVC(C, class_weight="balanced")`` for a single feature, solved exactly.

    The same model: one-vs-rest over K > 2 classes (a single problem for two classes), each problem

        min_{w, b}  (w^2 + b^2) / 2 + sum_i C_i max(0, 1 - t_i (w x_i + b))^2,   t_i = +-1,

    with the intercept penalised like a weight (liblinear's intercept_scaling=1) and liblinear's
    class weights: C_i = C * weight(class) for the positive class of a one-vs-rest problem and plain
    C for the rest (for two classes each class has its own weight); "balanced" weights are
    n / (K * count(class)). In one dimension the samples that violate the margin form a prefix or a
    suffix of the sorted feature, so with prefix sums of 1, x and x^2 per class every objective,
    gradient and Hessian costs O(log n), and damped Newton steps reach the optimum to rounding
    (liblinear stops at a gradient tolerance, so its boundary may sit a hair away).
    """

    def __init__(self, C: float = 0.01, max_iter: int = 100):
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C}")
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.C = float(C)
        self.max_iter = max_iter

    def fit(self, x: np.ndarray, y: np.ndarray) -> LinearSVC1D:
        """Fit on one feature ``x`` (n,) and class labels ``y`` (n,); returns self."""
        x, y = np.asarray(x, np.float64), np.asarray(y)
        if x.ndim != 1 or y.shape != x.shape or len(x) == 0:
            raise ValueError(f"x has shape {x.shape} and y {y.shape}; expected (n,) and (n,) with n >= 1")
        if not np.isfinite(x).all():
            raise ValueError("x has NaN or infinite values; expected a finite feature")
        self.classes_, labels = np.unique(y, return_inverse=True)
        num_classes = len(self.classes_)
        if num_classes < 2:
            raise ValueError(f"y has only the class {self.classes_}; expected at least 2 classes")
        class_weights = len(y) / (num_classes * np.bincount(labels))  # "balanced"

        # Problem m separates its positive class from the rest: (positive class, C of positives, C of the rest).
        if num_classes == 2:
            positive, positive_cost, rest_cost = np.array([1]), self.C * class_weights[1:], self.C * class_weights[:1]
        else:
            positive, positive_cost, rest_cost = (
                np.arange(num_classes),
                self.C * class_weights,
                np.full(num_classes, self.C),
            )

        order = np.argsort(x, kind="stable")
        sorted_x = x[order]
        powers = sorted_x[:, None] ** np.arange(3)  # 1, x, x^2
        # Prefix moments: class_moments[i, c] = (count, sum x, sum x^2) of the i smallest samples of class c.
        class_moments = np.zeros((len(x) + 1, num_classes, 3))
        class_moments[np.arange(1, len(x) + 1), labels[order]] = powers
        np.cumsum(class_moments, axis=0, out=class_moments)
        all_moments = np.concatenate([np.zeros((1, 3)), np.cumsum(powers, axis=0)])
        problems = _SquaredHingeProblems(sorted_x, all_moments, class_moments[:, positive], positive_cost, rest_cost)
        self.coef_, self.intercept_ = problems.minimise(self.max_iter)
        return self

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """w x + b of every problem: (n, 1) for two classes, else (n, K)."""
        return np.asarray(x, np.float64)[:, None] * self.coef_ + self.intercept_

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The class with the highest decision value (two classes: the second one where it is > 0)."""
        scores = self.decision_function(x)
        best = (scores[:, 0] > 0).astype(np.int64) if scores.shape[1] == 1 else scores.argmax(axis=1)
        return self.classes_[best]


class _SquaredHingeProblems:
    """M independent one-feature L2-regularised squared-hinge problems on the same sorted feature.

    Problem m has targets +1 for its positive samples, given by their prefix moments (n + 1, M, 3)
    in the order of ``sorted_x``, and -1 for the rest (all samples' prefix moments (n + 1, 3)
    minus the positives'); each group has its cost per problem (M,).
    """

    def __init__(
        self,
        sorted_x: np.ndarray,
        all_moments: np.ndarray,
        positive_moments: np.ndarray,
        positive_cost: np.ndarray,
        rest_cost: np.ndarray,
    ):
        self.sorted_x = sorted_x
        self.all_moments = all_moments
        self.positive_moments = positive_moments
        self.costs = {+1.0: positive_cost, -1.0: rest_cost}
        self.problem = np.arange(positive_moments.shape[1])

    def minimise(self, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
        """Damped generalised Newton from w = b = 0 until no problem can decrease: (w (M,), b (M,)).

        A problem is done when its Newton decrement (the decrease a full step promises) is below
        1e-12 of its objective, which is rounding; on the right active set one full step is exact.
        """
        theta = np.zeros((len(self.problem), 2))
        value, gradient, hessian = self._evaluate(theta)
        for _ in range(max_iter):
            step = -np.linalg.solve(hessian, gradient[..., None])[..., 0]
            decrease = -np.sum(gradient * step, axis=1)
            improving = decrease > 1e-12 * np.maximum(value, 1.0)
            if not improving.any():
                break
            step[~improving] = 0
            # Halve each problem's step until it decreases the objective enough (Armijo), 30 times at most.
            length = np.ones(len(theta))
            for _ in range(30):
                trial = theta + length[:, None] * step
                short = self._evaluate(trial, value_only=True) > value - 1e-4 * length * decrease
                if not short.any():
                    break
                length = np.where(short, length / 2, length)
            theta = trial
            value, gradient, hessian = self._evaluate(theta)
        return theta[:, 0], theta[:, 1]

    def _evaluate(self, theta: np.ndarray, value_only: bool = False):
        """Objective (M,), and unless ``value_only`` its gradient (M, 2) and generalised Hessian (M, 2, 2)."""
        w, b = theta[:, 0], theta[:, 1]
        value = 0.5 * (w**2 + b**2)
        gradient = theta.copy()
        hessian = np.broadcast_to(np.eye(2), (len(theta), 2, 2)).copy()
        for target, cost in self.costs.items():
            count, sum_x, sum_xx = (cost[:, None] * self._active_moments(target, w, b)).T
            # sum over the active samples of cost * (1 - t (w x + b))^2, expanded in the moments.
            value += count - 2 * target * (w * sum_x + b * count) + w**2 * sum_xx + 2 * w * b * sum_x + b**2 * count
            if not value_only:
                gradient[:, 0] += 2 * (w * sum_xx + b * sum_x - target * sum_x)
                gradient[:, 1] += 2 * (w * sum_x + b * count - target * count)
                hessian += 2 * np.stack([np.stack([sum_xx, sum_x], -1), np.stack([sum_x, count], -1)], -2)
        return value if value_only else (value, gradient, hessian)

    def _active_moments(self, target: float, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(count, sum x, sum x^2) (M, 3) of the group's samples inside the margin, t (w x + b) < 1.

        That is a x < c with a = t w, c = 1 - t b: the samples below c / a if a > 0, above it if
        a < 0, all or none if a = 0.
        """
        slope, limit = target * w, 1 - target * b
        with np.errstate(divide="ignore", invalid="ignore"):
            boundary = limit / slope
        below = np.searchsorted(self.sorted_x, boundary, side="left")  # samples with x < boundary
        above = np.searchsorted(self.sorted_x, boundary, side="right")  # first sample with x > boundary
        n = len(self.sorted_x)
        start = np.where(slope > 0, 0, np.where(slope < 0, above, np.where(limit > 0, 0, n)))
        stop = np.where(slope > 0, below, n)
        positives = self.positive_moments[stop, self.problem] - self.positive_moments[start, self.problem]
        if target > 0:
            return positives
        return self.all_moments[stop] - self.all_moments[start] - positives
