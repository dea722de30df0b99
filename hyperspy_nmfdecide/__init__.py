"""hyperspy_nmfdecide: multi-restart NMF sweeps for 4D-STEM in HyperSpy/pyxem.

The signal classes are registered with HyperSpy through ``hyperspy_extension.yaml``::

    >>> import hyperspy.api as hs
    >>> from hyperspy_nmfdecide import simulated_scan
    >>> s = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=0).signal
    >>> type(s).__name__
    'NMFDecideDiffraction2D'

The results the signal methods return (:class:`NMFSweep`, :class:`KDecision`,
:class:`PhaseMaps`), the solver (:class:`BatchedNMF`) and the simulator
(:func:`simulated_scan`) are importable from here.
"""

import importlib
import logging

__version__ = "0.1.0"

_logger = logging.getLogger(__name__)

# Where each public name lives.  They are imported on first use (PEP 562): HyperSpy imports
# this package while it loads its extensions, before ``hyperspy.api`` is complete, so the
# package itself must not import HyperSpy.
_PUBLIC = {
    "BatchedNMF": "hyperspy_nmfdecide.nmf",
    "KDecision": "hyperspy_nmfdecide.results",
    "NMFSweep": "hyperspy_nmfdecide.results",
    "PhaseMaps": "hyperspy_nmfdecide.results",
    "simulated_scan": "hyperspy_nmfdecide.data",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
