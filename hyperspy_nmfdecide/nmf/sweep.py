"""The k sweep of Uesugi et al. (2021): many random restarts per k, all advanced together.

Runs are grouped into batches whose stacked factor matrix fits a memory budget; within a batch
every pass over X serves every restart of every k (see ``engine.py``).  Per run seeds come from
``np.random.SeedSequence(entropy, spawn_key=(k, restart))``: a run depends only on the seed, k
and its restart index, never on the batch it ran in or on the rest of the k range.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .checkpoint import SweepCheckpoint, data_fingerprint
from .chunks import DTYPE, MatrixStats
from .dispatch import make_operator
from .engine import Run, direct_mse, evaluate_mse, fit_runs
from .operators import LowRankOperator
from .starts import nndsvd_start, random_start, resolve_entropy
from .svd import TruncatedSVD, truncated_svd
from .updates import SOLVERS

_logger = logging.getLogger(__name__)

MODES = ("exact", "fast")

#: Bytes allowed for the stacked loadings and factors of one batch when the caller does not say.
DEFAULT_BATCH_BYTES = 2 * 2**30

#: Passes of plain (one-sweep) HALS at the start of every random and NNDSVD run, before
#: ``inner_sweeps`` apply.  Accelerated from the first pass, runs at k = 5 of the speed
#: benchmark's scan settled in minima 0.03 % higher (best of 20 at tol 1e-5: 0.225413 against
#: 0.225347 with these plain passes first).
PLAIN_PASSES = 10


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

    @property
    def best_loss(self) -> np.ndarray:
        return np.minimum(self.loss.min(axis=1), self.nndsvd_loss)


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
    k_values
        Ranks to fit, each ≥ 1 and ≤ min(n_probe, n_pixel) after masking.
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
    row_mask, col_mask
        Boolean, ``True`` = excluded probe / pixel.
    random_state
        Seed (int), Generator or None (fresh entropy, recorded in ``entropy``).
    negative_values
        ``"raise"`` or ``"clip"``.
    chunk_rows
        Rows of X per chunk of a pass (default: ~32 MiB, or the dask chunks).
    batch_bytes
        Memory for the stacked loadings and factors of one batch of runs.
    inner_sweeps
        HALS only: sweeps over the components per factor update, all from the products of one
        pass over X (accelerated HALS, Gillis & Glineur 2012; 1 = plain HALS).  A sweep costs
        about k / p of a pass, so ten of them cost a few per cent of it and a run needs about
        half the passes (benchmarks/speed.py).  The first ``PLAIN_PASSES`` passes of each run
        use one sweep.
    refine_runs, refine_tol
        The ``refine_runs`` lowest-MSE runs of each k (default 3 in exact mode, 0 in fast mode,
        whose polish already ends on X), once every run has stopped, go on from where they
        stopped until their relative decrease falls below ``refine_tol`` (default
        ``tol / 100``) or they have had ``max_iter`` passes in all; the lowest is kept.  All k
        advance together, in passes of 3 × Σk columns (about 20 % of the time of the sweep of
        benchmarks/speed.py).  Without it the kept run stopped at the first flat pass and
        scikit-learn's coordinate descent, whose rule is far stricter, reached a lower MSE;
        three runs because the lowest when all stopped at ``tol`` is often not the one that
        ends lowest (their final MSEs differ by ~0.01 %).
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

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((300, 2)) @ rng.random((2, 50))
    >>> result = run_sweep(x, [1, 2, 3], n_restarts=3, random_state=0, tol=1e-6)
    >>> bool(result.best_loss[1] < 1e-4 < result.best_loss[0])
    True
    """
    k_values = _check_k(k_values)
    if not isinstance(n_restarts, (int, np.integer)) or n_restarts < 1:
        raise ValueError(f"n_restarts must be an integer ≥ 1, got {n_restarts!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer ≥ 1, got {max_iter!r}")
    if not tol >= 0:
        raise ValueError(f"tol must be ≥ 0, got {tol!r}")
    if not isinstance(inner_sweeps, (int, np.integer)) or inner_sweeps < 1:
        raise ValueError(f"inner_sweeps must be an integer ≥ 1, got {inner_sweeps!r}")
    entropy = resolve_entropy(random_state)
    if refine_runs is None:
        refine_runs = 3 if mode == "exact" else 0

    operator = make_operator(
        data,
        row_mask=row_mask,
        col_mask=col_mask,
        negative_values=negative_values,
        chunk_rows=chunk_rows,
    )
    n, p = operator.shape
    if k_values[-1] > min(n, p):
        raise ValueError(
            f"k_range goes up to {k_values[-1]}, but the data matrix after masking is {n} × {p}: "
            f"k can be at most {min(n, p)}"
        )
    stages = _Stages(None)
    if checkpoint is not None:
        manifest = {
            "k_values": k_values,
            "n_restarts": int(n_restarts),
            "solver": solver,
            "mode": mode,
            "max_iter": int(max_iter),
            "tol": float(tol),
            "negative_values": negative_values,
            "chunk_rows": int(operator.chunk_rows),
            "batch_bytes": int(batch_bytes),
            "polish": [int(polish_runs), int(polish_iter)],
            "inner_sweeps": int(inner_sweeps),
            "refine": [int(refine_runs), None if refine_tol is None else float(refine_tol)],
            "entropy": None if random_state is None else entropy,
            "data": data_fingerprint(operator.stats, operator.row_keep, operator.col_keep),
        }
        store = SweepCheckpoint(
            checkpoint, manifest, interval=checkpoint_interval, new_entropy=entropy
        )
        entropy, stages = int(store.manifest["entropy"]), _Stages(store)
    rms = float(np.sqrt(operator.stats.squared_norm / (float(n) * float(p))))
    progress = _Progress(on_pass)

    svd_rank = k_values[-1] + (25 if mode == "fast" else 0)
    svd = truncated_svd(operator, svd_rank, random_state=entropy % 2**32)
    progress.passes(2 + 2 * 3 + 1)
    pca = np.array(
        [svd.pca_mse(operator.stats.squared_norm, operator.stats.n_elements, k) for k in k_values]
    )

    runs: dict[tuple[int, int], Run] = {}
    for k in k_values:
        for r in range(n_restarts):
            runs[k, r] = random_start(entropy, k, r, (n, p), operator.stats.mean, solver)
        runs[k, -1] = Run(*nndsvd_start(svd, k, fill=np.sqrt(rms / k) / 10))

    def fit_in_stages(prefix: str, keys: list, fit_operator, stage_tol: float, budgeted: bool):
        """Fit ``keys`` in memory-sized batches, each a checkpoint stage.

        A budgeted stage continues runs (within ``max_iter`` passes in all) past their plain
        passes; the first stage starts them.
        """
        for i, batch in enumerate(_batches(keys, n, p, batch_bytes)):
            budget = [max_iter - runs[key].n_iter for key in batch] if budgeted else None
            stages.run(
                f"{prefix}{i:04d}",
                runs,
                batch,
                lambda **resuming: fit_runs(
                    fit_operator,
                    [runs[key] for key in batch],
                    solver=solver,
                    max_iter=max_iter,
                    tol=stage_tol,
                    passes_left=budget,
                    on_iteration=lambda *_: progress.passes(1),
                    inner_sweeps=inner_sweeps,
                    plain_passes=0 if budgeted else PLAIN_PASSES,
                    **resuming,
                ),
            )

    fit_operator = operator if mode == "exact" else _compressed(svd, operator.stats)
    fit_in_stages("batch", list(runs), fit_operator, tol, budgeted=False)
    if mode == "fast":
        stages.run(
            "polish",
            runs,
            list(runs),
            lambda **_: _evaluate_and_polish(
                operator,
                runs,
                k_values,
                polish_runs,
                batch_bytes,
                progress,
                lambda batch: fit_runs(
                    operator,
                    batch,
                    solver=solver,
                    max_iter=polish_iter,
                    tol=tol,
                    on_iteration=lambda *_: progress.passes(1),
                    inner_sweeps=inner_sweeps,
                ),
            ),
        )
    kept = _kept_runs(runs, k_values, refine_runs, max_iter)
    for key in kept:
        runs[key].converged = False
    # The kept runs go on at a finer tol, within their max_iter budget, all k together.
    refine = tol / 100 if refine_tol is None else refine_tol
    fit_in_stages("refine", kept, operator, refine, budgeted=True)
    result = _collect(operator, runs, k_values, n_restarts, pca, entropy)
    progress.passes(len(k_values))  # the direct MSE of each kept run: one pass per k
    return result


class _Progress:
    def __init__(self, callback: Callable[[], None] | None) -> None:
        self.callback = callback

    def passes(self, count: int) -> None:
        if self.callback is not None:
            for _ in range(count):
                self.callback()


def _check_k(k_values: Sequence[int]) -> list[int]:
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


def _evaluate_and_polish(
    operator, runs, k_values, polish_runs, batch_bytes, progress, polish: Callable[[list], object]
) -> None:
    """Exact MSE of every run (one pass), then ``polish`` (a short exact fit) of the best per k."""
    n, p = operator.shape
    keys = list(runs)
    for batch in _batches(keys, n, p, batch_bytes):
        exact = evaluate_mse(operator, [runs[key] for key in batch])
        progress.passes(1)
        for key, mse in zip(batch, exact):
            runs[key].history.append(float(mse))
    best = []
    for k in k_values:
        ranked = sorted((key for key in keys if key[0] == k), key=lambda key: runs[key].mse)
        best += ranked[:polish_runs] + ([] if (k, -1) in ranked[:polish_runs] else [(k, -1)])
    for key in best:
        runs[key].converged = False
    for batch in _batches(best, n, p, batch_bytes):
        polish([runs[key] for key in batch])


def _kept_runs(runs, k_values, refine_runs: int, max_iter: int) -> list[tuple[int, int]]:
    """The ``refine_runs`` lowest-MSE runs of every k that have passes left."""
    kept = []
    for k in k_values:
        ranked = sorted((key for key in runs if key[0] == k), key=lambda key: runs[key].mse)
        kept += [key for key in ranked[:refine_runs] if runs[key].n_iter < max_iter]
    return kept


class _Stages:
    """Runs the stages of a sweep, through a checkpoint when there is one."""

    def __init__(self, store: SweepCheckpoint | None) -> None:
        self.store = store

    def run(self, stage: str, runs: dict, keys: list, fit: Callable[..., object]) -> None:
        """``fit(resume=..., on_state=...)`` unless the checkpoint holds the stage's runs."""
        if self.store is None:
            fit()
            return
        if self.store.load_runs(stage, runs):
            return
        fit(resume=self.store.load_state(stage), on_state=self.store.snapshotter(stage))
        self.store.save_runs(stage, {key: runs[key] for key in keys})


def _collect(operator, runs, k_values, n_restarts, pca, entropy) -> SweepArrays:
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


def _normalised_full(operator, w: np.ndarray, h: np.ndarray):
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
