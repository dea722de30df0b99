"""The batched multi-restart NMF engine: every restart of every k advances in one pass over X.

Per iteration, for all active runs stacked into one factor matrix ``H_s`` (T × p, T = Σ k over
runs):

1. one pass over navigation chunks ``X_c`` (:func:`_chunk_pass`, run by the operator in this
   process or on a dask cluster): ``A = X_c H_sᵀ`` (one wide GEMM), the chunk's block of the
   loadings updated, then ``W_cᵀ X_c`` (the second wide GEMM) and ``W_cᵀ W_c`` while the chunk
   is in cache, summed over chunks;
2. the exact loss of every run from products already at hand:
   ``‖X − WH‖² = ‖X‖² − 2⟨WᵀX, H⟩ + ⟨WᵀW, HHᵀ⟩``;
3. runs whose relative loss decrease fell below ``tol`` stop and leave the stack (their last
   ``(W, H)`` pair is the one the loss belongs to);
4. the factors of the remaining runs are updated from ``WᵀX`` and ``WᵀW``.

Nothing here imports HyperSpy; X is reached only through an operator (the
:class:`~.chunks.FitOperator` contract of ``chunks.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .chunks import DTYPE, ChunkOperator, ChunkProducts, FitOperator
from .updates import SOLVERS, update_h, update_w

__all__ = ["FitState", "Run", "direct_mse", "evaluate_mse", "fit_runs"]


@dataclass
class Run:
    """One NMF run: its start, and after :func:`fit_runs` its result.

    ``w`` is (n, k) and ``h`` (k, p) in the operator's kept rows and columns.  For the ALS solver
    ``h`` may be None: the first factors are then computed from the random loadings, as in
    Uesugi's step 3.

    Examples
    --------
    >>> run = Run(np.ones((5, 2), np.float32), np.ones((2, 4), np.float32))
    >>> run.k, run.n_iter, run.mse
    (2, 0, nan)
    """

    w: np.ndarray
    h: np.ndarray | None
    history: list[float] = field(default_factory=list)
    converged: bool = False

    @property
    def k(self) -> int:
        return self.w.shape[1]

    @property
    def n_iter(self) -> int:
        return len(self.history)

    @property
    def mse(self) -> float:
        return self.history[-1] if self.history else float("nan")


@dataclass
class FitState:
    """A stack of runs between two passes: what :func:`fit_runs` needs to go on exactly.

    ``order`` indexes the ``runs`` given to :func:`fit_runs` for each stacked run; the stack's
    layout (dead columns not yet compacted included) is kept as it was, so a resumed fit
    repeats the same products and ends bit for bit where an uninterrupted one would.
    ``finished`` holds ``(w, h)`` of the runs that are no longer advancing.
    """

    iteration: int
    order: np.ndarray
    alive: np.ndarray
    wt: np.ndarray
    counts: list[tuple[int, int]]
    factors: list[np.ndarray]
    histories: list[np.ndarray]
    converged: np.ndarray
    finished: dict[int, tuple[np.ndarray, np.ndarray]]


class _Stack:
    """Runs side by side: loadings transposed (T, n) and factors grouped by k.

    The loadings are held as one block of columns per chunk of X (``blocks``), where the
    operator keeps them: in this process, or on the cluster worker that holds the chunk.

    A run that stops is written back to its :class:`Run` and marked dead; it keeps its columns
    (their further updates are ignored) until dead columns are a quarter of the stack, when
    :meth:`compact` gathers the live ones.  Rebuilding at every stop copied the whole stack
    once per finishing run.
    """

    def __init__(self, runs: list[Run], operator: FitOperator) -> None:
        p = operator.shape[1]
        by_k: dict[int, list[Run]] = {}
        for run in runs:
            by_k.setdefault(run.k, []).append(run)
        self.operator = operator
        self.runs = [run for k in sorted(by_k) for run in by_k[k]]
        wt = np.concatenate([run.w.T for run in self.runs], axis=0).astype(DTYPE, copy=False)
        self.blocks = operator.split_rows(wt)
        factors = {
            k: np.stack([r.h if r.h is not None else np.zeros((k, p), DTYPE) for r in members])
            for k, members in by_k.items()
        }
        self._set_groups({k: len(members) for k, members in by_k.items()}, factors)

    def _set_groups(self, counts: dict[int, int], factors: dict[int, np.ndarray]) -> None:
        self.groups: list[tuple[int, int, slice, np.ndarray]] = []
        start = 0
        for k in sorted(counts):
            cols = slice(start, start + k * counts[k])
            self.groups.append((k, counts[k], cols, factors[k].astype(DTYPE, copy=False)))
            start = cols.stop
        self.n_columns = start
        self.alive = np.ones(len(self.runs), dtype=bool)

    @classmethod
    def restore(cls, runs: list[Run], state: FitState, operator: FitOperator) -> _Stack:
        """The stack a :class:`FitState` was taken from, over these ``runs`` (in its order)."""
        stack = cls.__new__(cls)
        stack.operator = operator
        stack.runs = runs
        stack.blocks = operator.split_rows(state.wt)
        counts = dict(state.counts)
        stack._set_groups(counts, dict(zip(counts, state.factors)))
        stack.alive = np.array(state.alive, dtype=bool)
        return stack

    def state(self, iteration: int, runs: list[Run]) -> FitState:
        """A :class:`FitState` before pass ``iteration`` (factor arrays shared, not copied)."""
        index = {id(run): i for i, run in enumerate(runs)}
        live = {id(run) for run, alive in zip(self.runs, self.alive) if alive}
        return FitState(
            iteration=iteration,
            order=np.array([index[id(run)] for run in self.runs], dtype=np.int64),
            alive=self.alive,
            wt=self.operator.join_rows(self.blocks),
            counts=[(k, count) for k, count, _, _ in self.groups],
            factors=[h for _, _, _, h in self.groups],
            histories=[np.asarray(run.history, dtype=np.float64) for run in runs],
            converged=np.array([run.converged for run in runs]),
            finished={i: (run.w, run.h) for i, run in enumerate(runs) if id(run) not in live},
        )

    def h_stack(self) -> np.ndarray:
        return np.concatenate([h.reshape(-1, h.shape[2]) for _, _, _, h in self.groups], axis=0)

    def _members(self):
        """(position in self.runs, k, index within the group, columns of the group)."""
        position = 0
        for k, count, cols, h in self.groups:
            for r in range(count):
                yield position, k, r, cols, h
                position += 1

    def retire(self, positions: Sequence[int]) -> None:
        """Write the runs at these positions back to their :class:`Run` and mark them dead."""
        wanted = set(positions)
        leaving = [member for member in self._members() if member[0] in wanted]
        if not leaving:
            return
        rows = np.concatenate([cols.start + r * k + np.arange(k) for _, k, r, cols, _ in leaving])
        taken = self.operator.map_blocks(_take_rows, self.blocks, rows)
        loadings_t = self.operator.join_rows(taken)
        start = 0
        for position, k, r, _, h in leaving:
            run = self.runs[position]
            run.w = np.ascontiguousarray(loadings_t[start : start + k].T)
            run.h = np.array(h[r])
            self.alive[position] = False
            start += k

    def dead_fraction(self) -> float:
        dead = sum(self.runs[i].k for i in np.flatnonzero(~self.alive))
        return dead / self.n_columns

    def compact(self) -> None:
        """Drop the columns of dead runs (one gather of the live loadings rows)."""
        rows, counts, factors = [], {}, {}
        for k, count, cols, h in self.groups:
            first = sum(c for kk, c, _, _ in self.groups if kk < k)
            live = np.flatnonzero(self.alive[first : first + count])
            if live.size:
                base = cols.start + (live[:, None] * k + np.arange(k)).ravel()
                rows.append(base)
                counts[k], factors[k] = live.size, h[live]
        self.runs = [run for run, alive in zip(self.runs, self.alive) if alive]
        self.blocks = self.operator.map_blocks(_take_rows, self.blocks, np.concatenate(rows))
        self._set_groups(counts, factors)


def _take_rows(block: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A task on one block of the loadings: these rows (a copy)."""
    return block[rows]


def fit_runs(
    operator: FitOperator,
    runs: list[Run],
    *,
    solver: str = "hals",
    max_iter: int = 200,
    tol: float = 1e-4,
    on_iteration: Callable[[int, int], None] | None = None,
    fixed_factors: bool = False,
    passes_left: Sequence[int] | None = None,
    resume: FitState | None = None,
    on_state: Callable[[Callable[[], FitState]], None] | None = None,
    inner_sweeps: int = 1,
    plain_passes: int = 0,
) -> list[Run]:
    """Advance all ``runs`` together until each converges or ``max_iter`` passes are done.

    Parameters
    ----------
    operator
        The data X as chunks (any :class:`~.chunks.FitOperator`: dense, sparse, low-rank,
        or on a cluster).
    runs
        Starting points; updated in place and returned.
    solver
        ``"hals"``, ``"mu"`` or ``"als"``.
    max_iter
        Maximum number of passes over X per run.
    tol
        A run stops when ``(mse_prev - mse) / mse_prev < tol``.
    on_iteration
        Called as ``on_iteration(iteration, n_active)`` after every pass.
    fixed_factors
        Keep ``h`` as given and fit only the loadings (projection of new data).
    passes_left
        Per run, the passes it may take in this call (each ≤ ``max_iter``); default
        ``max_iter`` for all.  Lets runs with different budgets share every pass over X.
    resume
        A state handed to ``on_state`` by an earlier call with the same arguments: the fit
        goes on from there and ends exactly as if it had never stopped.
    on_state
        Called between passes with a function returning the current :class:`FitState` (it
        shares the stack's arrays: save it before returning), for checkpoints.
    inner_sweeps
        HALS sweeps per update of each factor, from the products of one pass (accelerated
        HALS, Gillis & Glineur 2012); 1 is plain HALS.  Other solvers update once.
    plain_passes
        The first passes of this call use one sweep whatever ``inner_sweeps`` is.

    Returns
    -------
    list of Run
        With ``history`` holding the MSE after every pass (the last one is that of the returned
        ``w``, ``h``) and ``converged`` set.

    Examples
    --------
    >>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((50, 3)) @ rng.random((3, 40))
    >>> runs = [Run(rng.random((50, 3)), rng.random((3, 40))) for _ in range(4)]
    >>> runs = fit_runs(DenseOperator(x), runs, max_iter=500, tol=1e-7)
    >>> min(run.mse for run in runs) < 1e-4
    True
    """
    caps = _checked_caps(runs, solver, max_iter, passes_left, inner_sweeps)
    pending = [run for run in runs if not run.converged]
    if not pending:
        return runs
    cap_of = {id(run): cap for run, cap in zip(runs, caps)}
    stack, start = _started(operator, runs, pending, solver, resume)
    for iteration in range(start, max(cap_of[id(run)] for run in stack.runs)):
        sweeps = 1 if iteration < plain_passes else int(inner_sweeps)
        wtx, wtw, hht = _pass(operator, stack, solver, update_loadings=True, sweeps=sweeps)
        mse = _stack_mse(operator, stack, wtx, wtw, hht)
        stack.retire(_record_pass(stack, mse, iteration, tol, cap_of))
        if on_iteration is not None:
            on_iteration(iteration, int(stack.alive.sum()))
        if not stack.alive.any():
            break
        if not fixed_factors:
            for k, _, cols, h in stack.groups:
                update_h(solver, h, wtx[cols].reshape(h.shape), wtw[k], sweeps)
        if stack.dead_fraction() >= 0.25:
            stack.compact()
        if on_state is not None:
            on_state(lambda: stack.state(iteration + 1, runs))
    return runs


def _checked_caps(
    runs: list[Run],
    solver: str,
    max_iter: int,
    passes_left: Sequence[int] | None,
    inner_sweeps: int,
) -> list[int]:
    """The passes each run may take, after checking :func:`fit_runs`' arguments."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if not isinstance(inner_sweeps, (int, np.integer)) or inner_sweeps < 1:
        raise ValueError(f"inner_sweeps must be an integer ≥ 1, got {inner_sweeps!r}")
    caps = [max_iter] * len(runs) if passes_left is None else [int(c) for c in passes_left]
    if len(caps) != len(runs) or any(not 1 <= cap <= max_iter for cap in caps):
        raise ValueError(
            f"passes_left must give 1..{max_iter} passes for each of the {len(runs)} runs"
        )
    return caps


def _started(
    operator: FitOperator,
    runs: list[Run],
    pending: list[Run],
    solver: str,
    resume: FitState | None,
) -> tuple[_Stack, int]:
    """The stack to advance and its first iteration: rebuilt from ``resume``, or new."""
    if resume is not None:
        return _resumed(runs, resume, operator), resume.iteration
    stack = _Stack(pending, operator)
    # Uesugi's ALS starts from random loadings only: one pass computes the first factors.
    if any(run.h is None for run in stack.runs):
        wtx, wtw, _ = _pass(operator, stack, solver, update_loadings=False)
        for k, _, cols, h in stack.groups:
            update_h(solver, h, wtx[cols].reshape(h.shape), wtw[k])
    return stack, 0


def _record_pass(
    stack: _Stack, mse: np.ndarray, iteration: int, tol: float, cap_of: dict[int, int]
) -> list[int]:
    """Append each live run's MSE to its history; return the positions of runs that stop."""
    finished = []
    for position, run_mse in enumerate(mse):
        if not stack.alive[position]:
            continue
        run = stack.runs[position]
        previous = run.history[-1] if run.history else np.inf
        run.history.append(float(run_mse))
        # A run continued from an earlier call ended that call just after a loadings
        # update; its first pass here updates the loadings again for the same factors and
        # can hardly lower the MSE, so it is not a test of convergence.
        stopped = iteration > 0 and previous - run_mse < tol * previous
        run.converged = bool(stopped)
        if stopped or iteration == cap_of[id(run)] - 1:
            finished.append(position)
    return finished


def _resumed(runs: list[Run], state: FitState, operator: FitOperator) -> _Stack:
    """Put the runs back as ``state`` recorded them, and rebuild its stack."""
    if len(state.histories) != len(runs) or state.order.max(initial=-1) >= len(runs):
        raise ValueError(f"the saved fit state is for {len(state.histories)} runs, not {len(runs)}")
    for run, history, converged in zip(runs, state.histories, state.converged):
        run.history, run.converged = [float(v) for v in history], bool(converged)
    for i, (w, h) in state.finished.items():
        runs[i].w, runs[i].h = w, h
    return _Stack.restore([runs[i] for i in state.order], state, operator)


def evaluate_mse(operator: FitOperator, runs: list[Run]) -> np.ndarray:
    """Exact MSE of each run's current ``(w, h)`` on the operator's X, in one pass.

    Examples
    --------
    >>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
    >>> x = np.ones((4, 3))
    >>> runs = [Run(np.ones((4, 1), np.float32), np.full((1, 3), v, np.float32)) for v in (1, 2)]
    >>> evaluate_mse(DenseOperator(x), runs).tolist()
    [0.0, 1.0]
    """
    stack = _Stack(runs, operator)
    wtx, wtw, hht = _pass(operator, stack, "hals", update_loadings=False)
    by_run = dict(zip(map(id, stack.runs), _stack_mse(operator, stack, wtx, wtw, hht)))
    return np.array([by_run[id(run)] for run in runs])


def direct_mse(operator: FitOperator, run: Run) -> float:
    """MSE of one run from the residual itself, one pass over X.

    The loss identity used during the fit loses relative precision when the MSE is many orders
    below ``‖X‖² / (n p)`` (float32 cancellation); the kept runs are reported with this value.

    Examples
    --------
    >>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
    >>> run = Run(np.ones((4, 1), np.float32), np.full((1, 3), 2, np.float32))
    >>> direct_mse(DenseOperator(np.ones((4, 3))), run)
    1.0
    """
    _, total = operator.map_reduce(_chunk_squared_error, operator.split_rows(run.w.T), h=run.h)
    return total / operator.stats.n_elements


def _chunk_squared_error(
    products: ChunkProducts, chunk: Any, wt_block: np.ndarray, *, h: np.ndarray
) -> tuple[None, float]:
    residual = products.dense(chunk) - wt_block.T @ h
    return None, float(np.einsum("ij,ij->", residual, residual, dtype=np.float64))


def _stack_mse(
    operator: ChunkOperator, stack: _Stack, wtx: np.ndarray, wtw: dict, hht: dict
) -> np.ndarray:
    """MSE of every stacked run, in ``stack.runs`` order, from ``‖X‖² − 2⟨WᵀX, H⟩ + ⟨WᵀW, HHᵀ⟩``.

    Products are float32; the three terms are summed in float64, where they nearly cancel.
    """
    out = []
    for k, count, cols, h in stack.groups:
        products = wtx[cols].reshape(count, -1) * h.reshape(count, -1)
        cross = products.sum(axis=1, dtype=np.float64)
        quadratic = np.einsum("rkl,rkl->r", wtw[k], hht[k])
        out.append(np.maximum(operator.stats.squared_norm - 2 * cross + quadratic, 0.0))
    return np.concatenate(out) / operator.stats.n_elements


def _pass(
    operator: FitOperator, stack: _Stack, solver: str, *, update_loadings: bool, sweeps: int = 1
) -> tuple[np.ndarray, dict, dict]:
    """One pass over the chunks of X: ``Wᵀ X`` (T, p), and ``Wᵀ W`` and ``H Hᵀ`` per k."""
    # Both Gram matrices in float64: in float32 their rounding put an error of up to 7.6e-6
    # (relative) on the MSE of benchmarks/speed.py's scan, above the per-pass decreases that
    # ``tol / 100`` waits for, so kept runs stopped at random; in float64 it is ≤ 1.3e-6.
    # (H Hᵀ carries most of it: with W_cᵀ W_c left in float32 the error was ≤ 1.6e-6.)
    hht = {k: _gram(h) for k, _, _, h in stack.groups}
    stack.blocks, (wtx, wtw) = operator.map_reduce(
        _chunk_pass,
        stack.blocks,
        h_stack=stack.h_stack(),
        hht=hht,
        layout=[(k, count, cols) for k, count, cols, _ in stack.groups],
        solver=solver,
        update_loadings=update_loadings,
        sweeps=sweeps,
        in_place=operator.in_place,
    )
    return operator.finish_wtx(wtx), wtw, hht


def _chunk_pass(
    products: ChunkProducts,
    chunk: Any,
    wt_block: np.ndarray,
    *,
    h_stack: np.ndarray,
    hht: dict[int, np.ndarray],
    layout: list[tuple[int, int, slice]],
    solver: str,
    update_loadings: bool,
    sweeps: int,
    in_place: bool,
) -> tuple[np.ndarray, tuple[np.ndarray, dict[int, np.ndarray]]]:
    """The work of one chunk in a pass: its loadings block updated, ``W_cᵀ X_c``, ``W_cᵀ W_c``.

    Returns the new block and the partial sums ``(W_cᵀ X_c, {k: W_cᵀ W_c})``; the block is
    updated in place when the operator allows it (in this process), else on a copy.
    """
    if not in_place:
        wt_block = wt_block.copy()
    n_c = wt_block.shape[1]
    if update_loadings:
        hxt = products.h_times_xt(chunk, h_stack)
        for k, count, cols in layout:
            shape = (count, k, n_c)
            loadings, data_products = wt_block[cols].reshape(shape), hxt[cols].reshape(shape)
            update_w(solver, loadings, data_products, hht[k], sweeps)
    wtw = {}
    for k, count, cols in layout:
        wtw[k] = _gram(wt_block[cols].reshape(count, k, n_c))
    return wt_block, (products.wt_times_x(chunk, wt_block), wtw)


def _gram(factor: np.ndarray) -> np.ndarray:
    """``F Fᵀ`` of each restart's (k, m) factor, accumulated in float64."""
    wide = factor.astype(np.float64)
    return np.matmul(wide, wide.transpose(0, 2, 1))
