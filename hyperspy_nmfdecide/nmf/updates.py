"""Update rules of the three solvers, batched over restarts that share one k.

Shapes, for R restarts of rank k, a chunk of n_c probes and p pixels:

* ``wt``: (R, k, n_c) loadings of the chunk, transposed, updated in place;
* ``hxt``: (R, k, n_c) the chunk's ``H Xᵀ``;
* ``hht``: (R, k, k) ``H Hᵀ``;
* ``h``: (R, k, p) factors, updated in place;
* ``wtx``: (R, k, p) ``Wᵀ X``;  ``wtw``: (R, k, k) ``Wᵀ W``.

Loadings are kept transposed so that the innermost, contiguous axis is the long one (probes or
pixels) in both updates.

Each rule needs only those products, which is what lets one pass over navigation chunks serve
every restart (DESIGN §7).  The rules are the textbook ones, written here because no library
offers them batched over restarts or split into a chunked W step and a global H step:

* ``"hals"``: hierarchical ALS (Cichocki & Phan 2009), ``sweeps`` Gauss–Seidel sweeps over the
  components per update: with more than one, the accelerated HALS of Gillis & Glineur (2012),
  which reuses the pass's costly products for several cheap sweeps on the small factors;
* ``"mu"``: Lee & Seung (2001) multiplicative updates for the Frobenius loss;
* ``"als"``: Uesugi et al. (2021): least squares, negatives set to zero, factor rows
  (Uesugi's columns of S) normalised to unit L2 norm.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numba
import numpy as np

__all__ = ["SOLVERS", "call_parallel", "update_h", "update_w"]

SOLVERS = ("hals", "mu", "als")

# Guards divisions; float32 resolution, like scikit-learn's NMF.  An absolute amount: it is
# negligible only because the sweep fits X divided by a power of two near its rms whenever
# that rms is outside ``operators.RMS_WINDOW`` (at ×1e-12 it outweighed the Gram diagonal and
# MU's denominator, and MU returned the all-zero model).
_EPS = float(np.finfo(np.float32).eps)

# numba's workqueue threading layer (what it falls back to without TBB or OpenMP) aborts the
# interpreter when two threads enter a parallel function at once ("Concurrent access has been
# detected": two sweeps in two threads killed a Jupyter kernel).  Such calls go one at a time;
# the other layers are thread-safe and are not serialised.
_PARALLEL_LOCK = threading.Lock()
_SAFE_LAYERS = ("tbb", "omp")

#: Work (restarts × k² × columns × sweeps, about half the flops) below which a HALS update runs
#: in the calling thread: about 2 ms on one core.  A parallel region costs little on an idle
#: machine, but under OpenMP's default busy-waiting it waits for a core whenever the cores are
#: taken (by BLAS threads spinning after a product, or by other processes): on the 2-core
#: machine shared with other jobs the sparse sweep, hundreds of small updates per pass, took
#: up to four times as long with every update parallel as on one thread.
PARALLEL_WORK = 10_000_000


def _parallel_is_thread_safe() -> bool:
    """Whether numba's parallel functions may run in two threads at once (layer chosen)."""
    try:
        return numba.threading_layer() in _SAFE_LAYERS
    except ValueError:  # no parallel function has run yet: the layer is not chosen
        return False


def call_parallel(function: Callable[..., None], *args: Any) -> None:
    """``function(*args)`` for a numba ``parallel=True`` function, serialised if need be.

    Every parallel kernel of the package is called through here: one at a time under the
    workqueue layer, freely under the thread-safe ones.

    Examples
    --------
    >>> out = np.zeros((1, 1, 2), np.float32)
    >>> call_parallel(_hals_rows, out, np.ones_like(out), np.ones((1, 1, 1), np.float32),
    ...               np.float32(0), 1)
    >>> out.tolist()
    [[[1.0, 1.0]]]
    """
    if _parallel_is_thread_safe():
        function(*args)
        return
    with _PARALLEL_LOCK:
        function(*args)


def _hals(v: np.ndarray, rhs: np.ndarray, gram: np.ndarray, sweeps: int) -> None:
    """:func:`_hals_rows` on ``v`` in place, in this thread when the update is small."""
    r, k, m = v.shape
    if r * k * k * m * sweeps < PARALLEL_WORK:
        _hals_rows_serial(v, rhs, gram, np.float32(_EPS), sweeps)
    else:
        call_parallel(_hals_rows, v, rhs, gram, np.float32(_EPS), sweeps)


def update_w(
    solver: str, wt: np.ndarray, hxt: np.ndarray, hht: np.ndarray, sweeps: int = 1
) -> None:
    """Update the (transposed) loadings of one chunk in place, with the factors fixed.

    ``sweeps`` is the number of HALS sweeps (ignored by the other solvers).

    Examples
    --------
    >>> wt = np.ones((1, 1, 3), np.float32)  # one restart, k = 1, three probes
    >>> update_w("mu", wt, np.full((1, 1, 3), 2, np.float32), np.ones((1, 1, 1)))
    >>> wt.round(3).tolist()
    [[[2.0, 2.0, 2.0]]]
    """
    if solver == "hals":
        gram = np.ascontiguousarray(hht, dtype=wt.dtype)
        _hals(wt, hxt, gram, sweeps)
    elif solver == "mu":
        denominator = np.matmul(hht.astype(wt.dtype), wt)
        denominator += _EPS
        wt *= hxt
        wt /= denominator
        np.maximum(wt, 0, out=wt)  # a compressed X (mode="fast") can give slightly negative HXᵀ
    elif solver == "als":
        wt[...] = np.matmul(np.linalg.pinv(hht, hermitian=True), hxt)
        np.maximum(wt, 0, out=wt)
    else:  # pragma: no cover - checked by the caller
        raise ValueError(solver)


def update_h(solver: str, h: np.ndarray, wtx: np.ndarray, wtw: np.ndarray, sweeps: int = 1) -> None:
    """Update the factors in place, with the loadings fixed (after a full pass).

    ``sweeps`` is the number of HALS sweeps (ignored by the other solvers).

    Examples
    --------
    >>> h = np.zeros((1, 1, 2), np.float32)  # ALS: least squares, then unit-norm rows
    >>> update_h("als", h, np.array([[[3.0, 4.0]]], np.float32), np.ones((1, 1, 1)))
    >>> np.round(h.astype(float), 3).tolist()
    [[[0.6, 0.8]]]
    """
    if solver == "hals":
        gram = np.ascontiguousarray(wtw, dtype=h.dtype)
        _hals(h, wtx, gram, sweeps)
    elif solver == "mu":
        denominator = np.matmul(wtw.astype(h.dtype), h)
        denominator += _EPS
        h *= wtx
        h /= denominator
        np.maximum(h, 0, out=h)
    elif solver == "als":
        h[...] = np.matmul(np.linalg.pinv(wtw, hermitian=True).astype(h.dtype), wtx)
        np.maximum(h, 0, out=h)
        norms = np.linalg.norm(h, axis=2, keepdims=True)
        np.divide(h, norms, out=h, where=norms > 0)
    else:  # pragma: no cover - checked by the caller
        raise ValueError(solver)


#: Columns of a factor that :func:`_hals_rows` updates as one task: a (k, 256) float32 tile of
#: the factor and of its data product take at most 30 KiB at k = 15, and stay in the L1 cache
#: through every sweep.  A multiple of every SIMD width, so tiling changes no rounding.
_TILE = 256


@numba.njit(parallel=True, cache=True, fastmath=True)
def _hals_rows(v, rhs, gram, eps, sweeps):  # pragma: no cover - compiled
    """``sweeps`` HALS sweeps (Gauss-Seidel over the k rows) of ``v`` for every restart.

    ``v`` (R, k, m) holds one factor (loadings transposed, or factors) with ``rhs`` (R, k, m)
    its data product and ``gram`` (R, k, k) the other factor's Gram matrix.  Row j becomes
    ``max(0, v_j + (rhs_j − Σ_o gram_jo v_o) / gram_jj)``, rows updated earlier in the sweep
    being used at once.  Column i of ``v`` depends on column i of ``rhs`` only, so the
    columns are cut into tiles of :data:`_TILE`, and every (restart, tile) pair runs all its
    sweeps as one parallel task (:func:`_hals_task`), from the L1 cache: the same arithmetic on
    every entry as sweep after sweep over whole rows, and enough tasks for every core when few
    restarts are left.  A fixed number of sweeps (not Gillis & Glineur's stop on the size of
    the change) keeps the loadings of a probe independent of the chunk it was updated in, so
    every chunking gives the same result.
    """
    n_tiles = (v.shape[2] + _TILE - 1) // _TILE
    for task in numba.prange(v.shape[0] * n_tiles):
        _hals_task(v, rhs, gram, eps, sweeps, task // n_tiles, task % n_tiles)


@numba.njit(cache=True, fastmath=True)
def _hals_rows_serial(v, rhs, gram, eps, sweeps):  # pragma: no cover - compiled
    """:func:`_hals_rows` in this thread, the same tasks in turn (the same result)."""
    n_tiles = (v.shape[2] + _TILE - 1) // _TILE
    for task in range(v.shape[0] * n_tiles):
        _hals_task(v, rhs, gram, eps, sweeps, task // n_tiles, task % n_tiles)


@numba.njit(cache=True, fastmath=True, inline="always")
def _hals_task(v, rhs, gram, eps, sweeps, r, tile):  # pragma: no cover - compiled
    """Every sweep of :func:`_hals_rows` on one tile of columns of restart ``r``."""
    columns = slice(tile * _TILE, min((tile + 1) * _TILE, v.shape[2]))
    # Contiguous copies: loops over them index from 0, which numba compiles without the
    # negative-index check that kept loops over an offset range from vectorising (3× slower).
    block = np.ascontiguousarray(v[r, :, columns])
    data = np.ascontiguousarray(rhs[r, :, columns])
    step = np.empty(block.shape[1], dtype=v.dtype)
    for _ in range(sweeps):
        _hals_sweep(block, data, gram[r], eps, step)
    v[r, :, columns] = block


@numba.njit(cache=True, fastmath=True, inline="always")
def _hals_sweep(v, rhs, gram, eps, step):  # pragma: no cover - compiled
    """One sweep of :func:`_hals_rows` for one restart's tile: ``v`` (k, m), ``gram`` (k, k)."""
    k, m = v.shape
    for j in range(k):
        step[:] = rhs[j]
        for other in range(k):
            coefficient = gram[j, other]
            for i in range(m):
                step[i] -= coefficient * v[other, i]
        scale = 1.0 / (gram[j, j] + eps)
        for i in range(m):
            value = v[j, i] + step[i] * scale
            v[j, i] = value if value > 0 else 0.0
