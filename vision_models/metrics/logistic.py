"""Multinomial logistic regression with an L2 penalty: the classifier of the BetaVAE score and explicitness.

disentanglement_lib fits scikit-learn's ``LogisticRegression`` with its defaults; this is the same
model and objective (C=1.0, L2 penalty on the weights but not the intercept, softmax over all classes,
a binary logistic model when there are only two classes), minimised by L-BFGS in float64 from zero
weights. The objective is strictly convex, so every correct solver lands on the same optimum; the
solver and its tolerances are pinned so that a fit is deterministic. scikit-learn is not needed.
"""

from __future__ import annotations

import numpy as np
import torch


class LogisticRegression:
    """L2-regularised logistic regression with scikit-learn's defaults and its fit / predict(_proba) / score.

    Minimises  mean_i CE(softmax(x_i W + b), y_i) + ||W||^2 / (2 C n)  (scikit-learn's C-scaled sum
    divided by n). With two classes the model has one logit, as in scikit-learn, which gives
    different probabilities than a two-column softmax under the same penalty.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 100, tol: float = 1e-4):
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C}")
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.tol = float(tol)  # on the largest absolute gradient entry, like scipy's L-BFGS-B pgtol

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
        """Fit on features ``x`` (n, d) and labels ``y`` (n,) of any sortable type; returns self."""
        x = self._check_x(x)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"y has shape {y.shape}; expected ({len(x)},) to match x")
        self.classes_, labels = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y holds a single class ({self.classes_[0]!r}); logistic regression needs at least 2")

        inputs = torch.from_numpy(x)
        targets = torch.from_numpy(labels.astype(np.int64))
        num_logits = 1 if len(self.classes_) == 2 else len(self.classes_)
        weight = torch.zeros(x.shape[1], num_logits, dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(num_logits, dtype=torch.float64, requires_grad=True)
        penalty = 1.0 / (2.0 * self.C * len(x))
        optimizer = torch.optim.LBFGS(
            [weight, bias],
            lr=1.0,
            max_iter=self.max_iter,
            history_size=10,
            tolerance_grad=self.tol,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        def objective() -> torch.Tensor:
            optimizer.zero_grad()
            logits = self._logits(inputs, weight, bias)
            loss = torch.nn.functional.cross_entropy(logits, targets) + penalty * weight.pow(2).sum()
            loss.backward()
            return loss

        optimizer.step(objective)
        self.coef_ = weight.detach().numpy().T.copy()  # (num_logits, d), scikit-learn's layout
        self.intercept_ = bias.detach().numpy().copy()
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n, num_classes), columns in the order of ``classes_``."""
        logits = self._logits(
            torch.from_numpy(self._check_x(x)), torch.from_numpy(self.coef_.T), torch.from_numpy(self.intercept_)
        )
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The most probable class of each row (n,)."""
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of ``predict(x)`` against ``y``."""
        return float(np.mean(self.predict(x) == np.asarray(y)))

    @staticmethod
    def _logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        logits = x @ weight + bias
        if logits.shape[1] == 1:  # binary model: class 0 is the zero logit, so softmax is the sigmoid
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
        return logits

    def _check_x(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"x has shape {x.shape}; expected (n, d) features with n >= 1")
        if hasattr(self, "coef_") and x.shape[1] != self.coef_.shape[1]:
            raise ValueError(f"x has {x.shape[1]} features; the model was fitted on {self.coef_.shape[1]}")
        return x
