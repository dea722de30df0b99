"""Truncated SVD of X by passes over navigation chunks.

The randomised range finder (Halko, Martinsson & Tropp 2011, Alg. 4.4) is written here against
the chunk operator because scikit-learn's ``randomized_svd`` needs X in memory; it reads X
``2 + 2 * n_power_iter`` times, each a narrow product.  It serves three purposes:

* the PCA loss per k, ``(‖X‖² − Σ_{i≤k} σ_i²) / (n p)``: the lower bound of any rank-k fit
  (uncentred, since ``W H`` has no offset term);
* the deterministic NNDSVD start (:func:`~.starts.nndsvd_start`), one extra run per k;
* the compressed surrogate of ``mode="fast"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .chunks import DTYPE, ChunkOperator

__all__ = ["TruncatedSVD", "truncated_svd"]


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
