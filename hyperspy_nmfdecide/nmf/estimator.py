"""A scikit-learn style NMF estimator on the batched engine.

It lets HyperSpy's own decomposition use our solvers::

    s.decomposition(algorithm=BatchedNMF(n_components=3), output_dimension=3)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from .chunks import DTYPE
from .engine import Run, direct_mse, fit_runs
from .operators import DenseOperator
from .starts import random_start, resolve_entropy

__all__ = ["BatchedNMF"]


class BatchedNMF(TransformerMixin, BaseEstimator):
    """Best of ``n_restarts`` random-start NMF fits, all advanced in one pass per iteration.

    Follows the scikit-learn estimator contract (``fit``, ``fit_transform``, ``transform``,
    ``inverse_transform``, ``components_``, ``n_iter_``, ``reconstruction_err_``): input is
    checked as scikit-learn does (2-D, finite, and here non-negative: a ``ValueError`` says
    which), and methods that need a fit raise ``NotFittedError`` before one.

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
        random_state: int | np.random.Generator | None = None,
    ) -> None:
        self.n_components = n_components
        self.n_restarts = n_restarts
        self.solver = solver
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def fit_transform(self, X: Any, y: None = None, **params: Any) -> np.ndarray:
        """Fit the model to ``X`` (n_samples, n_features) and return its loadings.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite, non-negative data.
        y : None
            Ignored (the estimator contract's place for targets).
        **params
            Ignored (scikit-learn passes fit parameters through).

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_components)
            The loadings W of the best run, float64.
        """
        X = self._checked(X, reset=True)
        # Fitted as X / scale (a power of two, 1 for data of ordinary scale): see normalise.
        operator = DenseOperator(X, drop_dark=False, normalise=True)
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
        scale = operator.scale
        self.reconstruction_err_ = float(np.sqrt(direct_mse(operator, best) * n * p)) * scale
        self.restart_mse_ = np.array([run.mse for run in runs]) * scale**2
        return best.w.astype(np.float64) * scale

    def fit(self, X: Any, y: None = None, **params: Any) -> BatchedNMF:
        """Fit the model to ``X``; return the estimator (see :meth:`fit_transform`)."""
        self.fit_transform(X)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Loadings of new data with the fitted components fixed (HALS on W only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite, non-negative data with the features the model was fitted on.

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        X = self._checked(X, reset=False)
        operator = DenseOperator(X, drop_dark=False, normalise=True)
        n = operator.shape[0]
        h = self.components_.astype(DTYPE)
        w = np.full((n, h.shape[0]), float(np.sqrt(operator.stats.squared_norm / X.size)), DTYPE)
        run = Run(w, h)
        fit_runs(
            operator, [run], solver="hals", max_iter=self.max_iter, tol=self.tol, fixed_factors=True
        )
        return run.w.astype(np.float64) * operator.scale

    def inverse_transform(self, X: Any) -> np.ndarray:
        """The data that loadings ``X`` (n_samples, n_components) stand for: ``X @ components_``.

        Returns
        -------
        numpy.ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        loadings = check_array(X, dtype=np.float64, ensure_all_finite=True)
        if loadings.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {loadings.shape[1]} columns, but {type(self).__name__} has "
                f"{self.n_components_} components: inverse_transform takes loadings."
            )
        return loadings @ self.components_

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        # Tells scikit-learn's estimator checks, and meta-estimators, that X must be >= 0.
        tags.input_tags.positive_only = True
        return tags

    def _checked(self, X: Any, *, reset: bool) -> np.ndarray:
        """``X`` as NMF needs it: 2-D, numeric, finite and non-negative; else a clear error.

        ``reset`` records the number of features (fit) instead of checking it (transform).
        Integer data keep their dtype: the operator converts them to float32 chunk by chunk.
        """
        # Finiteness is checked below, not by validate_data: its NaN message points to
        # estimators for supervised learning, and NMF users need to hear what NMF needs.
        X = validate_data(self, X, reset=reset, dtype="numeric", ensure_all_finite=False)
        problem = _value_problem(X)
        if problem is not None:
            found, advice = problem
            raise ValueError(
                f"{found} passed to {type(self).__name__}: NMF needs finite, non-negative "
                f"data. {advice}"
            )
        return X


def _value_problem(X: np.ndarray) -> tuple[str, str] | None:
    """What makes ``X`` unfit for NMF, and what to do about it; None when nothing does."""
    if X.dtype.kind == "f":
        if np.isnan(X).any():
            return "NaN values in data", "Fill or drop the missing entries first."
        if np.isinf(X).any():
            return "Infinite values (inf) in data", "Replace or drop them first."
    minimum = X.min()
    if minimum < 0:
        return (
            f"Negative values in data (minimum {minimum:g})",
            "Subtract a background that does not overshoot, or clip X at 0.",
        )
    return None
