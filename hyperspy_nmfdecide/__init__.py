"""hyperspy_nmfdecide: multi-restart NMF sweeps for 4D-STEM in HyperSpy/pyxem.

The signal classes are registered with HyperSpy through ``hyperspy_extension.yaml``::

    >>> import hyperspy.api as hs
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=0).signal
    >>> type(s).__name__
    'NMFDecideDiffraction2D'
"""

import logging

__version__ = "0.1.0"

_logger = logging.getLogger(__name__)

__all__ = ["__version__"]
