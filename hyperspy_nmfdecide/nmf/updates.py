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

import numba
import numpy as np

__all__ = ["SOLVERS", "update_h", "update_w"]

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


def _parallel_is_thread_safe() -> bool:
    """Whether numba's parallel functions may run in two threads at once (layer chosen)."""
    try:
        return numba.threading_layer() in _SAFE_LAYERS
    except ValueError:  # no parallel function has run yet: the layer is not chosen
        return False


def _hals(v: np.ndarray, rhs: np.ndarray, gram: np.ndarray, sweeps: int) -> None:
    """:func:`_hals_rows` on ``v`` in place, serialised unless the threading layer is safe."""
    if _parallel_is_thread_safe():
        _hals_rows(v, rhs, gram, np.float32(_EPS), sweeps)
        return
    with _PARALLEL_LOCK:
        _hals_rows(v, rhs, gram, np.float32(_EPS), sweeps)


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


@numba.njit(parallel=True, cache=True, fastmath=True)
def _hals_rows(v, rhs, gram, eps, sweeps):  # pragma: no cover - compiled
    """``sweeps`` HALS sweeps (Gauss-Seidel over the k rows) of ``v`` for every restart.

    ``v`` (R, k, m) holds one factor (loadings transposed, or factors) with ``rhs`` (R, k, m)
    its data product and ``gram`` (R, k, k) the other factor's Gram matrix.  Row j becomes
    ``max(0, v_j + (rhs_j − Σ_o gram_jo v_o) / gram_jj)``, rows updated earlier in the sweep
    being used at once.  Restarts are independent and run in parallel; every inner loop runs
    over the long, contiguous axis m, so it vectorises.  numpy would need k small batched
    products per restart instead.  A fixed number of sweeps (not Gillis & Glineur's
    stop on the size of the change) keeps the loadings of a probe independent of the chunk it
    was updated in, so every chunking gives the same result.
    """
    n_runs, k, m = v.shape
    for r in numba.prange(n_runs):
        step = np.empty(m, dtype=v.dtype)
        for _ in range(sweeps):
            _hals_sweep(v[r], rhs[r], gram[r], eps, step)


@numba.njit(cache=True, fastmath=True, inline="always")
def _hals_sweep(v, rhs, gram, eps, step):  # pragma: no cover - compiled
    """One sweep of :func:`_hals_rows` for one restart: ``v`` (k, m), ``gram`` (k, k)."""
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
