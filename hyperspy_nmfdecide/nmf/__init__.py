"""Numerics of the NMF sweep: batched multi-restart solvers over navigation chunks.

No HyperSpy import happens below this package (DESIGN §1).
"""

from .estimator import BatchedNMF
from .sweep import SweepArrays, run_sweep

__all__ = ["BatchedNMF", "SweepArrays", "run_sweep"]
