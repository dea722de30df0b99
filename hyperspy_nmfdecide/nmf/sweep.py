"""The k sweep of Uesugi et al. (2021): many random restarts per k, all advanced together.

Runs are grouped into batches whose stacked factor matrix fits a memory budget; within a batch
every pass over X serves every restart of every k (see ``engine.py``).  Every run starts from a
seed of its own (:mod:`.starts`): a run depends only on the seed, k and its restart index, never
on the batch it ran in or on the rest of the k range.

:func:`run_sweep` is the entry point; :class:`SweepParameters` holds its checked parameters and
``_Sweep`` runs the stages one after another: SVD and starts, the batches of runs, in fast mode
the exact evaluation and polish, the refinement of the kept runs, the collected result.
"""

from __future__ import annotations

import functools
import numbers
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from .checkpoint import SweepCheckpoint, data_fingerprint
from .chunks import DTYPE, DataOperator, FitOperator, MatrixStats
from .dispatch import make_operator
from .engine import Run, direct_mse, evaluate_mse, fit_runs
from .fingerprint import fingerprint_of
from .operators import LowRankOperator
from .starts import nndsvd_start, random_start, resolve_entropy
from .svd import TruncatedSVD, truncated_svd
from .updates import SOLVERS

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "MODES",
    "PLAIN_PASSES",
    "SweepArrays",
    "SweepParameters",
    "run_sweep",
]

MODES = ("exact", "fast")

#: Bytes allowed for the stacked loadings and factors of one batch when the caller does not say.
DEFAULT_BATCH_BYTES = 2 * 2**30

#: Passes of plain (one-sweep) HALS at the start of every random and NNDSVD run, before
#: ``inner_sweeps`` apply.  Accelerated from the first pass, runs at k = 5 of the speed
#: benchmark's scan settled in minima 0.03 % higher (best of 20 at tol 1e-5: 0.225413 against
#: 0.225347 with these plain passes first).
PLAIN_PASSES = 10

#: Passes over X of the truncated SVD (``2 + 2 * n_power_iter``) and of its last product.
_SVD_PASSES = 2 + 2 * 3 + 1


@dataclass
class SweepArrays:
    """Plain-array result of :func:`run_sweep` (no HyperSpy).

    ``loss``, ``n_iter`` and ``converged`` are (n_k, n_restarts) for the random starts; the
    ``nndsvd_*`` arrays are (n_k,) for the deterministic start.  ``best_run[i]`` is the restart
    index of the minimum-loss run at ``k_values[i]``, or -1 when the NNDSVD run won.
    ``runner_up[k]`` holds the unit-sum factors (k, n_pixel) of the second-best run, to show
    how alike the restarts' components are.
    ``factors[k]`` is (k, n_pixel) and ``loadings[k]`` (n_probe, k) of that best run, in the
    full (unmasked) pixel and probe space: excluded and dark pixels and excluded probes are 0.
    Factors sum to one, so a loading is the counts a component contributes to a pattern;
    components are ordered by integrated loading, descending.
    Every MSE and loading is in the data's units, whatever scale the solvers worked at.
    ``fingerprint`` identifies the data the sweep ran on (:func:`~.fingerprint.content_fingerprint`,
    a dict of floats that ``np.asarray`` turns into its JSON text; None for a sweep that did
    not record one).
    """

    k_values: np.ndarray
    loss: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    nndsvd_loss: np.ndarray
    nndsvd_n_iter: np.ndarray
    nndsvd_converged: np.ndarray
    pca_loss: np.ndarray
    best_run: np.ndarray
    loss_history: list[np.ndarray]
    factors: dict[int, np.ndarray]
    loadings: dict[int, np.ndarray]
    entropy: int
    runner_up: dict[int, np.ndarray] = field(default_factory=dict)
    fingerprint: dict | None = None

    @property
    def best_loss(self) -> np.ndarray:
        return np.minimum(self.loss.min(axis=1), self.nndsvd_loss)


@dataclass(frozen=True)
class SweepParameters:
    """How the runs of a sweep are fitted: the checked parameters of :func:`run_sweep`.

    Attributes
    ----------
    k_values
        Ranks to fit, each ≥ 1 (given in any order, with repeats; kept sorted and unique).
    n_restarts
        Random starts per k (plus one NNDSVD start per k, reported separately).
    solver
        ``"hals"``, ``"mu"`` or ``"als"``.
    mode
        ``"exact"``: every iteration on X.  ``"fast"``: iterate on a randomised rank
        (k_max + 25) compression of X, then evaluate every run exactly and polish the best
        ``polish_runs`` per k (and the NNDSVD run) on X for up to ``polish_iter`` passes.
    max_iter, tol
        Passes per run, and the relative MSE decrease below which a run stops.
    batch_bytes
        Memory for the stacked loadings and factors of one batch of runs.
    polish_runs, polish_iter
        Fast mode: runs per k polished on X, and their passes.
    inner_sweeps
        HALS only: sweeps over the components per factor update, all from the products of one
        pass over X (accelerated HALS, Gillis & Glineur 2012; 1 = plain HALS).  A sweep costs
        about k / p of a pass, so ten of them cost a few per cent of it and a run needs about
        half the passes (benchmarks/speed.py).  The first ``PLAIN_PASSES`` passes of each run
        use one sweep.
    refine_runs, refine_tol
        The ``refine_runs`` lowest-MSE runs of each k (None: 3 in exact mode, 0 in fast mode,
        whose polish already ends on X), once every run has stopped, go on from where they
        stopped until their relative decrease falls below ``refine_tol`` (None: ``tol / 100``)
        or they have had ``max_iter`` passes in all; the lowest is kept.  All k advance
        together, in passes of 3 × Σk columns (about 20 % of the time of the sweep of
        benchmarks/speed.py).  Without it the kept run stopped at the first flat pass and
        scikit-learn's coordinate descent, whose rule is far stricter, reached a lower MSE;
        three runs because the lowest when all stopped at ``tol`` is often not the one that
        ends lowest (their final MSEs differ by ~0.01 %).

    Examples
    --------
    >>> params = SweepParameters(k_values=[3, 1, 3], n_restarts=5)
    >>> params.k_values, params.refine_runs, params.refine_stop
    ((1, 3), 3, 1e-06)
    >>> SweepParameters(k_values=[2], n_restarts=1, solver="pca")
    Traceback (most recent call last):
    ...
    ValueError: solver must be one of ('hals', 'mu', 'als'), got 'pca'
    """

    k_values: tuple[int, ...]
    n_restarts: int = 20
    solver: str = "hals"
    mode: str = "exact"
    max_iter: int = 200
    tol: float = 1e-4
    batch_bytes: int = DEFAULT_BATCH_BYTES
    polish_runs: int = 3
    polish_iter: int = 50
    inner_sweeps: int = 10
    refine_runs: int | None = None
    refine_tol: float | None = None

    def __post_init__(self) -> None:
        # Frozen: the normalised values are set once, here, past the dataclass's guard.
        object.__setattr__(self, "k_values", tuple(_check_k(self.k_values)))
        _check_count(self.n_restarts, "n_restarts")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        _check_count(self.max_iter, "max_iter")
        _check_tolerance(self.tol, "tol")
        _check_count(self.inner_sweeps, "inner_sweeps")
        if self.refine_runs is None:
            object.__setattr__(self, "refine_runs", 3 if self.mode == "exact" else 0)

    @property
    def refine_stop(self) -> float:
        """The relative decrease below which a refined run stops."""
        return self.tol / 100 if self.refine_tol is None else self.refine_tol

    def check_rank(self, shape: tuple[int, int]) -> None:
        """Refuse a k above what the kept (n, p) matrix allows."""
        n, p = shape
        if self.k_values[-1] > min(n, p):
            raise ValueError(
                f"k_range goes up to {self.k_values[-1]}, but the data matrix after masking is "
                f"{n} × {p}: k can be at most {min(n, p)}"
            )

    def manifest(self, operator: DataOperator, negative_values: str, entropy: int | None) -> dict:
        """What a checkpoint of this sweep records (and a resumed sweep must match)."""
        return {
            "k_values": list(self.k_values),
            "n_restarts": int(self.n_restarts),
            "solver": self.solver,
            "mode": self.mode,
            "max_iter": int(self.max_iter),
            "tol": float(self.tol),
            "negative_values": negative_values,
            "chunk_rows": int(operator.chunk_rows),
            "batch_bytes": int(self.batch_bytes),
            "polish": [int(self.polish_runs), int(self.polish_iter)],
            "inner_sweeps": int(self.inner_sweeps),
            "refine": [
                int(self.refine_runs),
                None if self.refine_tol is None else float(self.refine_tol),
            ],
            "entropy": entropy,
            "data": data_fingerprint(operator.stats, operator.row_keep, operator.col_keep),
            "content": fingerprint_of(operator),
        }


def _check_count(value: Any, name: str) -> None:
    if not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")


def run_sweep(
    data,
    k_values: Sequence[int],
    n_restarts: int = 20,
    *,
    solver: str = "hals",
    mode: str = "exact",
    max_iter: int = 200,
    tol: float = 1e-4,
    row_mask: np.ndarray | None = None,
    col_mask: np.ndarray | None = None,
    random_state: int | np.random.Generator | None = None,
    negative_values: str = "raise",
    chunk_rows: int | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    polish_runs: int = 3,
    polish_iter: int = 50,
    inner_sweeps: int = 10,
    refine_runs: int | None = None,
    refine_tol: float | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_interval: float = 300.0,
    on_pass: Callable[[], None] | None = None,
) -> SweepArrays:
    """Multi-restart NMF for every k in ``k_values`` on a 2-D (n_probe, n_pixel) array.

    Parameters
    ----------
    data
        numpy or dask array, or scipy sparse matrix (n_probe, n_pixel), non-negative.  A
        sparse matrix (e.g. ePattern's redrawn spots) makes every pass cost O(non-zeros).
    k_values, n_restarts, solver, mode, max_iter, tol
        How the runs are fitted (see :class:`SweepParameters`, where every parameter of the
        fit is described).  Each k must be at most min(n_probe, n_pixel) after masking.
    batch_bytes, polish_runs, polish_iter, inner_sweeps, refine_runs, refine_tol
        Memory per batch, fast mode's polish, accelerated HALS, refinement of the kept runs:
        see :class:`SweepParameters`.
    row_mask, col_mask
        Boolean, ``True`` = excluded probe / pixel.
    random_state
        Seed (int), Generator or None (fresh entropy, recorded in ``entropy``).
    negative_values
        ``"raise"`` or ``"clip"``.
    chunk_rows
        Rows of X per chunk of a pass (default: ~32 MiB, or the dask chunks).
    checkpoint
        Directory where every finished batch of runs (and stage) is stored as it completes,
        with a snapshot of the running batch every ``checkpoint_interval`` seconds.  Run the
        same call again after an interruption (KeyboardInterrupt, a killed process): it
        resumes from there and returns exactly what an uninterrupted sweep returns.  A
        checkpoint of other data or other parameters is refused (:class:`CheckpointError`).
        With ``random_state=None`` the seed drawn by the first call is reused.
    checkpoint_interval
        Seconds between snapshots of the running batch (0: after every pass).
    on_pass
        Called after every pass over X (for progress bars).

    Returns
    -------
    SweepArrays

    Warns
    -----
    sklearn.exceptions.ConvergenceWarning
        Once, when the kept run of some k stopped at its pass limit before converging.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((300, 2)) @ rng.random((2, 50))
    >>> result = run_sweep(x, [1, 2, 3], n_restarts=3, random_state=0, tol=1e-6)
    >>> bool(result.best_loss[1] < 1e-4 < result.best_loss[0])
    True
    """
    params = SweepParameters(
        k_values=k_values,
        n_restarts=n_restarts,
        solver=solver,
        mode=mode,
        max_iter=max_iter,
        tol=tol,
        batch_bytes=batch_bytes,
        polish_runs=polish_runs,
        polish_iter=polish_iter,
        inner_sweeps=inner_sweeps,
        refine_runs=refine_runs,
        refine_tol=refine_tol,
    )
    entropy = resolve_entropy(random_state)
    operator = make_operator(
        data,
        row_mask=row_mask,
        col_mask=col_mask,
        negative_values=negative_values,
        chunk_rows=chunk_rows,
        normalise=True,
    )
    params.check_rank(operator.shape)
    stages = _Stages(None)
    if checkpoint is not None:
        manifest = params.manifest(
            operator, negative_values, None if random_state is None else entropy
        )
        store = SweepCheckpoint(
            checkpoint, manifest, interval=checkpoint_interval, new_entropy=entropy
        )
        entropy, stages = int(store.manifest["entropy"]), _Stages(store)
    return _Sweep(params, operator, entropy, stages, _Progress(on_pass)).run()


class _Sweep:
    """One sweep under way: its runs, and the stages that advance them in order."""

    def __init__(
        self,
        params: SweepParameters,
        operator: DataOperator,
        entropy: int,
        stages: _Stages,
        progress: _Progress,
    ) -> None:
        self.params = params
        self.operator = operator
        self.entropy = entropy
        self.stages = stages
        self.progress = progress
        self.runs: dict[tuple[int, int], Run] = {}

    def run(self) -> SweepArrays:
        """Every stage, then the result (and the warning about runs that did not converge)."""
        params, operator = self.params, self.operator
        svd, pca = self._svd()
        self._start_runs(svd)
        fit_operator = operator if params.mode == "exact" else _compressed(svd, operator.stats)
        self._fit_in_stages("batch", list(self.runs), fit_operator, params.tol, budgeted=False)
        if params.mode == "fast":
            self.stages.run("polish", self.runs, list(self.runs), self._evaluate_and_polish)
        self._refine()
        result = _collect(
            operator, self.runs, params.k_values, params.n_restarts, pca, self.entropy
        )
        _to_data_units(result, operator.scale)
        result.fingerprint = fingerprint_of(operator)
        # The direct MSE of each kept run: one pass per k.
        self.progress.passes(len(params.k_values))
        _warn_unconverged(result, params)
        return result

    def _svd(self) -> tuple[TruncatedSVD, np.ndarray]:
        """The truncated SVD the starts (and fast mode) need, and the PCA loss of each k."""
        params, stats = self.params, self.operator.stats
        svd_rank = params.k_values[-1] + (25 if params.mode == "fast" else 0)
        svd = truncated_svd(self.operator, svd_rank, random_state=self.entropy % 2**32)
        self.progress.passes(_SVD_PASSES)
        pca = np.array(
            [svd.pca_mse(stats.squared_norm, stats.n_elements, k) for k in params.k_values]
        )
        return svd, pca

    def _start_runs(self, svd: TruncatedSVD) -> None:
        """The random starts of every k, each k followed by its NNDSVD start (key ``(k, -1)``)."""
        n, p = self.operator.shape
        stats, params = self.operator.stats, self.params
        rms = float(np.sqrt(stats.squared_norm / (float(n) * float(p))))
        for k in params.k_values:
            for r in range(params.n_restarts):
                self.runs[k, r] = random_start(
                    self.entropy, k, r, (n, p), stats.mean, params.solver
                )
            self.runs[k, -1] = Run(*nndsvd_start(svd, k, fill=np.sqrt(rms / k) / 10))

    def _fit_in_stages(
        self, prefix: str, keys: list, fit_operator: FitOperator, stage_tol: float, budgeted: bool
    ) -> None:
        """Fit ``keys`` in memory-sized batches, each a checkpoint stage.

        A budgeted stage continues runs (within ``max_iter`` passes in all) past their plain
        passes; the first stage starts them.
        """
        n, p = self.operator.shape
        max_iter = self.params.max_iter
        for i, batch in enumerate(_batches(keys, n, p, self.params.batch_bytes)):
            budget = [max_iter - self.runs[key].n_iter for key in batch] if budgeted else None
            fit = functools.partial(self._fit_batch, fit_operator, batch, stage_tol, budget)
            self.stages.run(f"{prefix}{i:04d}", self.runs, batch, fit)

    def _fit_batch(
        self,
        fit_operator: FitOperator,
        batch: list,
        stage_tol: float,
        budget: list[int] | None,
        **resuming: Any,
    ) -> None:
        """One batch of runs advanced together: started (no ``budget``) or continued."""
        params = self.params
        fit_runs(
            fit_operator,
            [self.runs[key] for key in batch],
            solver=params.solver,
            max_iter=params.max_iter,
            tol=stage_tol,
            passes_left=budget,
            on_iteration=self._on_iteration,
            inner_sweeps=params.inner_sweeps,
            plain_passes=0 if budget is not None else PLAIN_PASSES,
            **resuming,
        )

    def _on_iteration(self, *_: Any) -> None:
        self.progress.passes(1)

    def _evaluate_and_polish(self, **_: Any) -> None:
        """Exact MSE of every run (one pass), then a short exact fit of the best per k."""
        params, operator, runs = self.params, self.operator, self.runs
        n, p = operator.shape
        keys = list(runs)
        for batch in _batches(keys, n, p, params.batch_bytes):
            exact = evaluate_mse(operator, [runs[key] for key in batch])
            self.progress.passes(1)
            for key, mse in zip(batch, exact):
                runs[key].history.append(float(mse))
        best = []
        for k in params.k_values:
            ranked = sorted((key for key in keys if key[0] == k), key=lambda key: runs[key].mse)
            top = ranked[: params.polish_runs]
            best += top + ([] if (k, -1) in top else [(k, -1)])
        for key in best:
            runs[key].converged = False
        for batch in _batches(best, n, p, params.batch_bytes):
            fit_runs(
                operator,
                [runs[key] for key in batch],
                solver=params.solver,
                max_iter=params.polish_iter,
                tol=params.tol,
                on_iteration=self._on_iteration,
                inner_sweeps=params.inner_sweeps,
            )

    def _refine(self) -> None:
        """The kept runs go on at a finer tol, within their max_iter budget, all k together."""
        params = self.params
        kept = _kept_runs(self.runs, params.k_values, params.refine_runs, params.max_iter)
        for key in kept:
            self.runs[key].converged = False
        self._fit_in_stages("refine", kept, self.operator, params.refine_stop, budgeted=True)


class _Progress:
    """Counts passes over X for the caller's ``on_pass`` callback, if any."""

    def __init__(self, callback: Callable[[], None] | None) -> None:
        self.callback = callback

    def passes(self, count: int) -> None:
        if self.callback is not None:
            for _ in range(count):
                self.callback()


class _Stages:
    """Runs the stages of a sweep, through a checkpoint when there is one."""

    def __init__(self, store: SweepCheckpoint | None) -> None:
        self.store = store

    def run(self, stage: str, runs: dict, keys: list, fit: Callable[..., object]) -> None:
        """``fit(resume=..., on_state=...)`` unless the checkpoint holds the stage's runs."""
        if self.store is None:
            fit()
            return
        if self.store.load_runs(stage, runs, keys):
            return
        resume = self.store.load_state(stage, len(keys))
        fit(resume=resume, on_state=self.store.snapshotter(stage))
        self.store.save_runs(stage, {key: runs[key] for key in keys})


def _check_k(k_values: Sequence[int]) -> list[int]:
    """The ranks, sorted and unique, after checking they are integers ≥ 1."""
    try:
        values = list(k_values)
    except TypeError as error:
        raise TypeError(f"k_range must be an iterable of integers, got {k_values!r}") from error
    if not all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in values):
        raise TypeError(f"k_range must contain integers, got {values!r}")
    if not values:
        raise ValueError("k_range is empty: give at least one number of components")
    values = sorted({int(k) for k in values})
    if values[0] < 1:
        raise ValueError(f"k_range values must be ≥ 1, got {values[0]}")
    return values


def _compressed(svd: TruncatedSVD, stats: MatrixStats) -> LowRankOperator:
    """The rank-l surrogate of fast mode, ``(U S) Vᵀ``, with the statistics of X."""
    return LowRankOperator(svd.u * svd.s, svd.vt, stats)


def _batches(keys: list[tuple[int, int]], n: int, p: int, budget: int) -> list[list]:
    """Split runs into batches whose loadings, factors and products fit ``budget`` bytes."""
    max_columns = max(1, budget // (4 * (n + 3 * p)))
    batches, current, width = [], [], 0
    for key in sorted(keys, key=lambda key: (key[0], key[1])):
        if current and width + key[0] > max_columns:
            batches.append(current)
            current, width = [], 0
        current.append(key)
        width += key[0]
    if current:
        batches.append(current)
    return batches


def _check_tolerance(value, name: str) -> None:
    """A TypeError for what is not a number, a ValueError for a number that is not ≥ 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number ≥ 0 such as 1e-4, got {value!r}")
    if not value >= 0:
        raise ValueError(f"{name} must be ≥ 0, got {value!r}")


def _warn_unconverged(result: SweepArrays, params: SweepParameters) -> None:
    """One :class:`~sklearn.exceptions.ConvergenceWarning` when a kept run hit its limit.

    A run that did not converge stopped at its pass limit: ``max_iter`` (refined runs: before
    their decrease fell below ``refine_tol``), or ``polish_iter`` for runs polished in fast mode.
    Only the kept (minimum-MSE) run of each k is reported: the other restarts exist to explore,
    and one of them stopping early is no concern once a converged run beat it (the default
    workflow of tests/test_reference.py has such restarts at most k).  ``converged`` records
    every run.
    """
    kept = np.array(
        [
            result.nndsvd_converged[i] if best < 0 else result.converged[i, best]
            for i, best in enumerate(result.best_run)
        ],
        dtype=bool,
    )
    if kept.all():
        return
    ks = ", ".join(str(int(k)) for k in result.k_values[~kept])
    limit, raise_ = f"max_iter={params.max_iter} passes", "max_iter"
    if params.mode == "fast":
        limit += f" (or polish_iter={params.polish_iter} when polished)"
        raise_ = "max_iter or polish_iter"
    warnings.warn(
        f"NMF sweep: the kept run at k = {ks} stopped at {limit} before converging, so its "
        f"MSE may still fall. Raise {raise_} to let it converge, or raise tol (now "
        f"{params.tol:g}) if a coarser stop is enough.",
        ConvergenceWarning,
        stacklevel=4,
    )


def _kept_runs(
    runs: dict[tuple[int, int], Run], k_values: Sequence[int], refine_runs: int, max_iter: int
) -> list[tuple[int, int]]:
    """The ``refine_runs`` lowest-MSE runs of every k that have passes left."""
    kept = []
    for k in k_values:
        ranked = sorted((key for key in runs if key[0] == k), key=lambda key: runs[key].mse)
        kept += [key for key in ranked[:refine_runs] if runs[key].n_iter < max_iter]
    return kept


def _collect(
    operator: DataOperator,
    runs: dict[tuple[int, int], Run],
    k_values: Sequence[int],
    n_restarts: int,
    pca: np.ndarray,
    entropy: int,
) -> SweepArrays:
    """The sweep's result: every run's loss, and per k the best run (its MSE measured directly)."""
    n_k = len(k_values)
    loss = np.empty((n_k, n_restarts))
    n_iter = np.empty((n_k, n_restarts), dtype=int)
    converged = np.empty((n_k, n_restarts), dtype=bool)
    nndsvd = [runs[k, -1] for k in k_values]
    best_run = np.empty(n_k, dtype=int)
    histories, factors, loadings, runner_up = [], {}, {}, {}
    for i, k in enumerate(k_values):
        for r in range(n_restarts):
            run = runs[k, r]
            loss[i, r], n_iter[i, r], converged[i, r] = run.mse, run.n_iter, run.converged
        candidates = sorted(list(range(n_restarts)) + [-1], key=lambda r: runs[k, r].mse)
        best = candidates[0]
        best_run[i] = best
        run = runs[k, best]
        run.history[-1] = direct_mse(operator, run)
        if best >= 0:
            loss[i, best] = run.mse
        histories.append(np.asarray(run.history))
        factors[k], loadings[k] = _normalised_full(operator, run.w, run.h)
        second = runs[k, candidates[1]]
        runner_up[k] = _normalised_full(operator, second.w, second.h)[0]
    return SweepArrays(
        k_values=np.asarray(k_values),
        loss=loss,
        n_iter=n_iter,
        converged=converged,
        nndsvd_loss=np.array([run.mse for run in nndsvd]),  # exact when it is the best run
        nndsvd_n_iter=np.array([run.n_iter for run in nndsvd]),
        nndsvd_converged=np.array([run.converged for run in nndsvd]),
        pca_loss=pca,
        best_run=best_run,
        loss_history=histories,
        factors=factors,
        loadings=loadings,
        entropy=entropy,
        runner_up=runner_up,
    )


#: Loadings above this are returned in float64 (float32's range, with room for sums of them).
_LOADINGS_MAX = float(np.finfo(DTYPE).max) / 2**16


def _to_data_units(result: SweepArrays, scale: float) -> None:
    """Undo the operator's normalisation (X / ``scale``): MSEs × scale², loadings × scale.

    ``scale`` is a power of two, so this is exact; at 1 (data of ordinary scale) nothing is
    touched.
    """
    if scale == 1.0:
        return
    square = scale * scale
    for name in ("loss", "nndsvd_loss", "pca_loss"):
        setattr(result, name, getattr(result, name) * square)
    result.loss_history = [history * square for history in result.loss_history]
    for k, loadings in result.loadings.items():
        if float(loadings.max(initial=0.0)) * scale < _LOADINGS_MAX:
            result.loadings[k] = loadings * DTYPE(scale)
        else:  # loadings of data beyond float32's range (which X / scale is fitted within)
            result.loadings[k] = loadings.astype(np.float64) * scale


def _normalised_full(
    operator: DataOperator, w: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-sum factors, loadings in counts, sorted by integrated loading, in full space."""
    sums = h.sum(axis=1, dtype=np.float64)
    safe = np.where(sums > 0, sums, 1.0)
    h = h / safe[:, None]
    w = w * sums[None, :]
    order = np.argsort(-w.sum(axis=0, dtype=np.float64), kind="stable")
    h, w = h[order], w[:, order]
    n_full, p_full = operator.full_shape
    factors = np.zeros((h.shape[0], p_full), dtype=DTYPE)
    factors[:, operator.col_keep] = h
    loadings = np.zeros((n_full, w.shape[1]), dtype=DTYPE)
    loadings[operator.row_keep] = w
    return factors, loadings
