"""Truncated SVD of X by passes over navigation chunks, and the NNDSVD start built from it.

The randomised range finder (Halko, Martinsson & Tropp 2011, Alg. 4.4) is written here against
the chunk operator because scikit-learn's ``randomized_svd`` needs X in memory; it reads X
``2 + 2 * n_power_iter`` times, each a narrow product.  It serves three purposes:

* the PCA loss per k, ``(‖X‖² − Σ_{i≤k} σ_i²) / (n p)``: the lower bound of any rank-k fit
  (uncentred, since ``W H`` has no offset term);
* the deterministic NNDSVD start of Boutsidis & Gallopoulos (2008), one extra run per k;
* the compressed surrogate of ``mode="fast"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .chunks import DTYPE, ChunkOperator

__all__ = ["TruncatedSVD", "nndsvd_start", "truncated_svd"]


@dataclass
class TruncatedSVD:
    """``X ≈ U diag(s) Vᵀ`` with ``rank`` columns; ``u`` is (n, rank), ``vt`` (rank, p).

    Examples
    --------
    >>> svd = TruncatedSVD(np.eye(3, 2), np.array([2.0, 1.0]), np.eye(2, 4))
    >>> svd.pca_mse(squared_norm=6.0, n_elements=12.0, k=1)
    0.16666666666666666
    """

    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray

    def pca_mse(self, squared_norm: float, n_elements: float, k: int) -> float:
        """MSE of the best rank-k approximation (an upper estimate, tight for top ranks)."""
        explained = float(np.sum(self.s[:k].astype(np.float64) ** 2))
        return max(squared_norm - explained, 0.0) / n_elements


def truncated_svd(
    operator: ChunkOperator,
    rank: int,
    *,
    oversample: int = 25,
    n_power_iter: int = 3,
    random_state: int = 0,
) -> TruncatedSVD:
    """Randomised truncated SVD of the operator's X.

    Parameters
    ----------
    operator
        The data X as chunks (only the :class:`~.chunks.ChunkOperator` stream is used, so a
        view such as ``noise.BinnedView`` serves as well).
    rank
        Number of singular triplets wanted.
    oversample
        Extra columns of the random test matrix; they make the top ``rank`` values accurate.
    n_power_iter
        Power iterations; each costs two passes over X.
    random_state
        Seed of the Gaussian test matrix.

    Examples
    --------
    >>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((200, 5)) @ rng.random((5, 60))
    >>> svd = truncated_svd(DenseOperator(x), 5)
    >>> bool(np.allclose(svd.s, np.linalg.svd(x, compute_uv=False)[:5], rtol=1e-4))
    True
    """
    n, p = operator.shape
    width = min(rank + oversample, n, p)
    rng = np.random.default_rng(random_state)
    omega = rng.standard_normal((p, width)).astype(DTYPE)
    q = _orthonormal(_times(operator, omega))
    for _ in range(n_power_iter):
        z = _orthonormal(_transpose_times(operator, q))
        q = _orthonormal(_times(operator, z))
    bt = _transpose_times(operator, q)  # (p, width) = Xᵀ Q
    v, s, ut_small = np.linalg.svd(bt.astype(np.float64), full_matrices=False)
    u = q.astype(np.float64) @ ut_small.T
    keep = min(rank, width)
    return TruncatedSVD(u[:, :keep], s[:keep], v[:, :keep].T)


def _times(operator: ChunkOperator, matrix: np.ndarray) -> np.ndarray:
    """``X M`` (n, width), one block of rows per chunk."""
    blocks, _ = operator.map_reduce(_chunk_times, matrix=matrix)
    return np.concatenate(operator.gather(blocks), axis=0).astype(DTYPE, copy=False)


def _chunk_times(products: Any, chunk: Any, _: None, *, matrix: np.ndarray) -> tuple:
    return np.asarray(chunk @ matrix), None


def _transpose_times(operator: ChunkOperator, q: np.ndarray) -> np.ndarray:
    """``Xᵀ Q`` (p, width), summed over chunks in float64."""
    _, total = operator.map_reduce(_chunk_transpose_times, operator.split_rows(q.T))
    return total.astype(DTYPE)


def _chunk_transpose_times(products: Any, chunk: Any, qt_block: np.ndarray) -> tuple:
    return None, np.asarray(chunk.T @ qt_block.T, dtype=np.float64)


def _orthonormal(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.qr(matrix.astype(np.float64))[0].astype(DTYPE)


def nndsvd_start(svd: TruncatedSVD, k: int, fill: float) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVD start (Boutsidis & Gallopoulos 2008) from the top-k singular triplets.

    Zeros are filled with ``fill`` (the "nndsvda" variant), so multiplicative updates can move
    them.  Written here because scikit-learn's version recomputes the SVD of an in-memory X.

    Returns
    -------
    w, h
        (n, k) and (k, p) float32 non-negative matrices.

    Examples
    --------
    >>> x = np.outer([1.0, 2.0, 3.0], [1.0, 0.0, 2.0])
    >>> u, s, vt = np.linalg.svd(x, full_matrices=False)
    >>> w, h = nndsvd_start(TruncatedSVD(u, s, vt), 1, fill=0.0)
    >>> bool(np.allclose(w @ h, x, atol=1e-5))
    True
    """
    u, s, vt = svd.u[:, :k], svd.s[:k], svd.vt[:k]
    w = np.zeros((u.shape[0], k))
    h = np.zeros((k, vt.shape[1]))
    w[:, 0] = np.sqrt(s[0]) * np.abs(u[:, 0])
    h[0] = np.sqrt(s[0]) * np.abs(vt[0])
    for j in range(1, k):
        x, y = u[:, j], vt[j]
        xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
        yp, yn = np.maximum(y, 0), np.maximum(-y, 0)
        pos = np.linalg.norm(xp) * np.linalg.norm(yp)
        neg = np.linalg.norm(xn) * np.linalg.norm(yn)
        if pos >= neg:
            a, b, sigma = xp, yp, pos
        else:
            a, b, sigma = xn, yn, neg
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na > 0 and nb > 0:
            scale = np.sqrt(s[j] * sigma)
            w[:, j] = scale * a / na
            h[j] = scale * b / nb
    w[w == 0] = fill
    h[h == 0] = fill
    return w.astype(DTYPE), h.astype(DTYPE)
