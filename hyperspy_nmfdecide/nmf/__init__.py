"""Numerics of the NMF sweep: batched multi-restart solvers over navigation chunks.

No HyperSpy import happens below this package (DESIGN §1).  Its modules, from the base up:
``chunks`` (the :class:`ChunkOperator` contract), ``operators`` (dense, sparse, low-rank data),
``cluster`` (on a dask cluster), ``dispatch`` (which operator a data array gets), ``updates``
(HALS, MU, ALS), ``engine`` (all runs advanced in one pass per iteration), ``svd``, ``starts``
(random and NNDSVD starts), ``fingerprint`` (what identifies the data), ``checkpoint``,
``sweep`` (:func:`run_sweep`) and ``estimator`` (:class:`BatchedNMF`).
"""

from .checkpoint import CheckpointError
from .chunks import ChunkOperator, ChunkProducts, DataOperator, FitOperator, MatrixStats
from .cluster import ClusterError
from .dispatch import make_operator
from .estimator import BatchedNMF
from .fingerprint import Fingerprint, content_fingerprint, same_fingerprint
from .operators import DenseOperator, LowRankOperator, SparseOperator
from .sweep import SweepArrays, SweepParameters, run_sweep

__all__ = [
    "BatchedNMF",
    "CheckpointError",
    "ChunkOperator",
    "ChunkProducts",
    "ClusterError",
    "DataOperator",
    "DenseOperator",
    "Fingerprint",
    "FitOperator",
    "LowRankOperator",
    "MatrixStats",
    "SparseOperator",
    "SweepArrays",
    "SweepParameters",
    "content_fingerprint",
    "make_operator",
    "run_sweep",
    "same_fingerprint",
]
