"""Which operator a data array gets: sparse, on a dask cluster, or dense in this process.

The choice sits above :mod:`.operators` and :mod:`.cluster`: ``cluster`` builds on
``operators``, and only this module needs both, so no import runs back up.
"""

from __future__ import annotations

from typing import Any

from .._utils import is_dask
from .cluster import ClusterOperator, active_client
from .operators import DenseOperator, SparseOperator

__all__ = ["make_operator"]


def make_operator(data: Any, **options: Any) -> DenseOperator | SparseOperator:
    """The operator for ``data``.

    Parameters
    ----------
    data : numpy.ndarray, dask.array.Array or scipy.sparse matrix
        The 2-D data matrix (n_probe, n_pixel).
    **options
        Passed to the operator (``row_mask``, ``col_mask``, ``negative_values``,
        ``chunk_rows``, ``drop_dark``).

    Returns
    -------
    DenseOperator or SparseOperator
        :class:`~.operators.SparseOperator` for scipy sparse matrices; for a dask array while
        a ``dask.distributed`` client is active, a :class:`~.cluster.ClusterOperator` (X held
        and worked on by the cluster, a :class:`~.operators.DenseOperator` subclass); else
        :class:`~.operators.DenseOperator`.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import sparse
    >>> type(make_operator(np.ones((3, 2)))).__name__
    'DenseOperator'
    >>> type(make_operator(sparse.csr_matrix(np.ones((3, 2))))).__name__
    'SparseOperator'
    """
    from scipy import sparse

    if sparse.issparse(data):
        return SparseOperator(data, **options)
    client = active_client() if is_dask(data) else None
    if client is not None:
        return ClusterOperator(data, client, **options)
    return DenseOperator(data, **options)
