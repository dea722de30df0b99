"""A scikit-learn style NMF estimator on the batched engine.

It lets HyperSpy's own decomposition use our solvers::

    s.decomposition(algorithm=BatchedNMF(n_components=3), output_dimension=3)
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .chunks import DTYPE
from .engine import Run, direct_mse, fit_runs
from .operators import DenseOperator
from .starts import random_start, resolve_entropy


class BatchedNMF(TransformerMixin, BaseEstimator):
    """Best of ``n_restarts`` random-start NMF fits, all advanced in one pass per iteration.

    Follows the scikit-learn estimator contract (``fit``, ``fit_transform``, ``transform``,
    ``components_``, ``n_iter_``, ``reconstruction_err_``).

    Parameters
    ----------
    n_components : int
        Rank k.
    n_restarts : int
        Random starts; the one with the lowest MSE is kept.
    solver : {"hals", "mu", "als"}
    max_iter : int
    tol : float
        Relative MSE decrease below which a run stops.
    random_state : int, numpy.random.Generator or None

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((100, 2)) @ rng.random((2, 30))
    >>> model = BatchedNMF(n_components=2, random_state=0, tol=1e-8, max_iter=500)
    >>> w = model.fit_transform(x)
    >>> w.shape, model.components_.shape, bool(model.reconstruction_err_ < 1e-2 * np.linalg.norm(x))
    ((100, 2), (2, 30), True)
    """

    def __init__(
        self,
        n_components: int = 2,
        *,
        n_restarts: int = 5,
        solver: str = "hals",
        max_iter: int = 200,
        tol: float = 1e-4,
        random_state=None,
    ) -> None:
        self.n_components = n_components
        self.n_restarts = n_restarts
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit_transform(self, X, y=None, **params):
        operator = DenseOperator(X, drop_dark=False)
        n, p = operator.shape
        k = int(self.n_components)
        if not 1 <= k <= min(n, p):
            raise ValueError(f"n_components must be between 1 and {min(n, p)}, got {k}")
        entropy = resolve_entropy(self.random_state)
        mean = operator.stats.mean
        runs = [
            random_start(entropy, k, r, (n, p), mean, self.solver) for r in range(self.n_restarts)
        ]
        fit_runs(operator, runs, solver=self.solver, max_iter=self.max_iter, tol=self.tol)
        best = min(runs, key=lambda run: run.mse)
        self.components_ = best.h.astype(np.float64)
        self.n_components_ = k
        self.n_iter_ = best.n_iter
        # scikit-learn reports the Frobenius norm, not the MSE.
        self.reconstruction_err_ = float(np.sqrt(direct_mse(operator, best) * n * p))
        self.restart_mse_ = np.array([run.mse for run in runs])
        return best.w.astype(np.float64)

    def fit(self, X, y=None, **params):
        self.fit_transform(X)
        return self

    def transform(self, X):
        """Loadings of new data with the fitted components fixed (HALS on W only)."""
        operator = DenseOperator(X, drop_dark=False)
        n = operator.shape[0]
        h = self.components_.astype(DTYPE)
        w = np.full((n, h.shape[0]), float(np.sqrt(operator.stats.squared_norm / X.size)), DTYPE)
        run = Run(w, h)
        fit_runs(
            operator, [run], solver="hals", max_iter=self.max_iter, tol=self.tol, fixed_factors=True
        )
        return run.w.astype(np.float64)
