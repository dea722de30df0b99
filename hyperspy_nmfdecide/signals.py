"""HyperSpy signal classes that carry the NMF sweep, decision and phase-map methods.

The classes are thin: each method checks its arguments, calls one numerics function and wraps
the result (DESIGN §1).  No arithmetic on patterns happens here.
"""

from __future__ import annotations

import logging

from pyxem.signals import ElectronDiffraction2D, LazyElectronDiffraction2D

_logger = logging.getLogger(__name__)


class NMFDecideDiffraction2D(ElectronDiffraction2D):
    """A 4D-STEM signal with multi-restart NMF sweep methods.

    Everything pyxem's :class:`~pyxem.signals.ElectronDiffraction2D` does still works.
    """

    _signal_type = "nmf_decide"


class LazyNMFDecideDiffraction2D(LazyElectronDiffraction2D, NMFDecideDiffraction2D):
    """Lazy (dask-backed) twin of :class:`NMFDecideDiffraction2D`."""
