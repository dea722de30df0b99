"""One-dimensional twins of the signal classes, so pyxem's 2-D → 1-D methods keep their class.

HyperSpy picks the class of a new signal from its ``signal_type``, its signal dimension and
whether it is lazy (``BaseSignal._assign_subclass``).  pyxem's methods that integrate the
patterns to profiles (``get_azimuthal_integral1d``, ``get_variance``...) keep the parent's
``signal_type``, which on our scans is ``"nmf_decide"``; without a 1-D class registered for
that type HyperSpy falls back to a plain :class:`~hyperspy.api.signals.Signal1D` and every
method of pyxem's :class:`~pyxem.signals.ElectronDiffraction1D` is lost.  These classes are
registered in ``hyperspy_extension.yaml`` for ``signal_type: nmf_decide`` and
``signal_dimension: 1``; they add nothing to pyxem's, so a profile of our scan is, and
behaves as, the profile pyxem's own class gives.

>>> from hyperspy_nmfdecide.data import simulated_scan
>>> scan = simulated_scan(nav_shape=(2, 2), pattern_size=16, random_state=0).signal
>>> profile = scan.get_azimuthal_integral1d(npt=8, show_progressbar=False)
>>> type(profile).__name__, isinstance(profile, ElectronDiffraction1D)
('NMFDecideDiffraction1D', True)
"""

from __future__ import annotations

from pyxem.signals import ElectronDiffraction1D, LazyElectronDiffraction1D

__all__ = ["LazyNMFDecideDiffraction1D", "NMFDecideDiffraction1D"]


class NMFDecideDiffraction1D(ElectronDiffraction1D):
    """A profile (or 1-D diffraction signal) taken from an ``"nmf_decide"`` scan.

    Exactly pyxem's :class:`~pyxem.signals.ElectronDiffraction1D`: it exists only so that
    HyperSpy finds a 1-D class for ``signal_type="nmf_decide"`` (see the module docstring).
    The NMF methods need patterns and live on
    :class:`~hyperspy_nmfdecide.signals.NMFDecideDiffraction2D` only.
    """

    _signal_type = "nmf_decide"


class LazyNMFDecideDiffraction1D(LazyElectronDiffraction1D, NMFDecideDiffraction1D):
    """The lazy twin of :class:`NMFDecideDiffraction1D` (pyxem's
    :class:`~pyxem.signals.LazyElectronDiffraction1D`)."""
