"""The product of a CSR matrix with a dense matrix, on every core: the sparse sweep's GEMMs.

Hand-written because scipy's CSR × dense products (``csr_matvecs``, ``csc_matvecs``) run on one
thread: on a 2-core machine they left half of it idle while the sparse sweep spent most of a
pass in them.  :class:`~.operators.SparseOperator` computes ``X_c Hᵀ`` with the CSR chunk and
``X_cᵀ Wᵀ`` with the CSR form of its transpose (the chunk's CSC copy, made once), so that both
products gather rows of the dense matrix into one output row: no two threads add into one
entry, and each entry is summed over the stored entries in their order, as scipy sums it.  The
result is scipy's to the bit and does not depend on the number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy import sparse

from .updates import call_parallel

__all__ = ["csr_times_dense"]


def _operands(matrix: sparse.csr_matrix, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The matrix's stored values and ``dense`` (C-contiguous), both in one float dtype."""
    if getattr(matrix, "format", None) != "csr":
        raise TypeError(f"matrix must be a scipy CSR matrix, got {type(matrix).__name__}")
    if dense.ndim != 2:
        raise ValueError(f"dense must be 2-D, got shape {dense.shape}")
    dtype = np.result_type(matrix.dtype, dense.dtype, np.float32)
    return matrix.data.astype(dtype, copy=False), np.ascontiguousarray(dense, dtype=dtype)


def csr_times_dense(matrix: sparse.csr_matrix, dense: np.ndarray) -> np.ndarray:
    """``matrix @ dense`` (n, T) for a CSR ``matrix`` (n, p) and a dense (p, T), threaded.

    Rows of the result are shared among numba's threads.  For ``A.T @ dense`` pass the CSR
    transpose ``A.tocsc().T`` (``.T`` of a CSC matrix is CSR without a copy).

    Parameters
    ----------
    matrix : scipy.sparse.csr_matrix
        (n, p), any real dtype.
    dense : numpy.ndarray
        (p, T).

    Returns
    -------
    numpy.ndarray
        (n, T), C-contiguous, in float32 when both operands are float32, else in the wider
        float dtype.

    Examples
    --------
    >>> x = sparse.csr_matrix(np.array([[0, 2.0], [1.0, 0]], np.float32))
    >>> csr_times_dense(x, np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)).tolist()
    [[6.0, 8.0], [1.0, 2.0]]
    """
    if matrix.shape[1] != dense.shape[0]:
        raise ValueError(f"shapes {matrix.shape} and {dense.shape} do not multiply")
    values, dense = _operands(matrix, dense)
    out = np.empty((matrix.shape[0], dense.shape[1]), dtype=dense.dtype)
    call_parallel(_csr_rows_times, matrix.indptr, matrix.indices, values, dense, out)
    return out


@numba.njit(parallel=True, cache=True)
def _csr_rows_times(indptr, indices, values, dense, out):  # pragma: no cover - compiled
    """``out[i] = Σ_j x_ij dense[j]`` over the stored entries of row i, rows in parallel.

    No fastmath: each product and sum is rounded as scipy rounds it (no fused multiply-add).
    """
    n_rows, width = out.shape
    for i in numba.prange(n_rows):
        for t in range(width):
            out[i, t] = 0.0
        for entry in range(indptr[i], indptr[i + 1]):
            value = values[entry]
            row = dense[indices[entry]]
            for t in range(width):
                out[i, t] += value * row[t]
