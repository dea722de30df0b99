"""Update rules of the three solvers, batched over restarts that share one k.

Shapes, for R restarts of rank k, a chunk of n_c probes and p pixels:

* ``w``: (n_c, R, k) loadings of the chunk, updated in place;
* ``xht``: (n_c, R, k) the chunk's ``X Hᵀ``;
* ``hht``: (R, k, k) ``H Hᵀ``;
* ``h``: (R, k, p) factors, updated in place;
* ``wtx``: (R, k, p) ``Wᵀ X``;  ``wtw``: (R, k, k) ``Wᵀ W``.

Each rule needs only those products, which is what lets one pass over navigation chunks serve
every restart (DESIGN §7).  The rules are the textbook ones, written here because no library
offers them batched over restarts or split into a chunked W step and a global H step:

* ``"hals"``: hierarchical ALS (Cichocki & Phan 2009; Gillis & Glineur 2012), one sweep over
  the components per update;
* ``"mu"``: Lee & Seung (2001) multiplicative updates for the Frobenius loss;
* ``"als"``: Uesugi et al. (2021): least squares, negatives set to zero, factor rows
  (Uesugi's columns of S) normalised to unit L2 norm.
"""

from __future__ import annotations

import numpy as np

SOLVERS = ("hals", "mu", "als")

# Guards divisions; relative to float32 resolution like scikit-learn's NMF.
_EPS = float(np.finfo(np.float32).eps)


def update_w(solver: str, w: np.ndarray, xht: np.ndarray, hht: np.ndarray) -> None:
    """Update the loadings of one chunk in place, with the factors fixed."""
    if solver == "hals":
        _hals_w(w, xht, hht)
    elif solver == "mu":
        denominator = np.einsum("nrl,rlk->nrk", w, hht)
        denominator += _EPS
        w *= xht
        w /= denominator
        np.maximum(w, 0, out=w)  # a compressed X (mode="fast") can give slightly negative XHᵀ
    elif solver == "als":
        w[...] = np.einsum("nrl,rlk->nrk", xht, np.linalg.pinv(hht, hermitian=True))
        np.maximum(w, 0, out=w)
    else:  # pragma: no cover - checked by the caller
        raise ValueError(solver)


def update_h(solver: str, h: np.ndarray, wtx: np.ndarray, wtw: np.ndarray) -> None:
    """Update the factors in place, with the loadings fixed (after a full pass)."""
    if solver == "hals":
        for j in range(h.shape[1]):
            # Gauss-Seidel: rows updated earlier in this sweep are used at once.
            step = wtx[:, j] - np.einsum("rl,rlp->rp", wtw[:, j], h)
            step /= wtw[:, j, j, None] + _EPS
            h[:, j] += step
            np.maximum(h[:, j], 0, out=h[:, j])
    elif solver == "mu":
        denominator = np.einsum("rkl,rlp->rkp", wtw, h)
        denominator += _EPS
        h *= wtx
        h /= denominator
        np.maximum(h, 0, out=h)
    elif solver == "als":
        h[...] = np.einsum("rkl,rlp->rkp", np.linalg.pinv(wtw, hermitian=True), wtx)
        np.maximum(h, 0, out=h)
        norms = np.linalg.norm(h, axis=2, keepdims=True)
        np.divide(h, norms, out=h, where=norms > 0)
    else:  # pragma: no cover - checked by the caller
        raise ValueError(solver)


def _hals_w(w: np.ndarray, xht: np.ndarray, hht: np.ndarray) -> None:
    diagonal = np.diagonal(hht, axis1=1, axis2=2) + _EPS  # (R, k)
    for j in range(w.shape[2]):
        step = xht[:, :, j] - np.einsum("nrl,rl->nr", w, hht[:, :, j])
        step /= diagonal[:, j]
        w[:, :, j] += step
        np.maximum(w[:, :, j], 0, out=w[:, :, j])
