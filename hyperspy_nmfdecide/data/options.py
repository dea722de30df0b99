"""The physics options of :func:`~hyperspy_nmfdecide.data.simulated_scan`, checked.

All off by default, when the scan is the additive model NMF fits; how they change the
expected counts is in :mod:`.physics`, the detector model in :mod:`.detector`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import _check_fraction, _check_non_negative
from .detector import _check_detector

__all__ = ["_Options", "_check_options", "_options_params"]

#: Pairs of phases whose reflections largely coincide at one orientation (first: the default).
_SHARED_PAIRS = (("Mg", "ZnO"), ("Al", "Au"))


@dataclass(frozen=True)
class _Options:
    """The checked physics options of :func:`simulated_scan` (all zero or None: additive)."""

    depletion: float = 0.0
    absorption: float = 0.0
    detector: dict | None = None
    descan: float = 0.0
    dynamical: float = 0.0
    shared: tuple[str, str] | None = None
    overlap: float = 0.0

    @property
    def non_additive(self) -> bool:
        """Whether the expected counts differ from ``weights @ sources``."""
        return any((self.depletion, self.absorption, self.descan, self.dynamical, self.overlap))


def _check_options(
    *,
    beam_depletion,
    absorption,
    detector,
    descan,
    dynamical,
    shared_reflections,
    overlap_physics,
    n_crystals: int,
    direct_beam: bool,
    dtype: np.dtype,
    room: float,
) -> _Options:
    """Check the physics options; ``room``: pixels the beam may move before nearing an edge."""
    depletion = _check_fraction(beam_depletion, "beam_depletion")
    if depletion and not direct_beam:
        raise ValueError("beam_depletion needs direct_beam=True: there is no beam to deplete")
    descan = _check_non_negative(descan, "descan")
    if descan / 2 > room:
        raise ValueError(
            f"descan must keep the beam 3 spot_sigma from the detector edge: at most "
            f"{2 * room:g} pixels with this beam_offset, got {descan!r}"
        )
    return _Options(
        depletion=depletion,
        absorption=_check_non_negative(absorption, "absorption"),
        detector=_check_detector(detector, dtype),
        descan=descan,
        dynamical=_check_fraction(dynamical, "dynamical", below_one=True),
        shared=_check_shared(shared_reflections, n_crystals),
        overlap=_check_fraction(overlap_physics, "overlap_physics"),
    )


def _check_shared(shared, n_crystals: int) -> tuple[str, str] | None:
    """The (crystal 1, crystal 2) phase pair of ``shared_reflections``, or None."""
    if shared is None or shared is False:
        return None
    pair = _SHARED_PAIRS[0] if shared is True else shared
    allowed = _SHARED_PAIRS + tuple(p[::-1] for p in _SHARED_PAIRS)
    try:
        pair = tuple(pair)
    except TypeError:
        pair = None
    if isinstance(shared, str) or pair not in allowed:
        raise ValueError(
            f"shared_reflections must be True, False or one of the pairs {_SHARED_PAIRS} "
            f"(either order), got {shared!r}"
        )
    if n_crystals < 2:
        raise ValueError(f"shared_reflections needs n_crystals ≥ 2, got {n_crystals}")
    return pair


def _options_params(options: _Options, crystal_info: list[dict], details: dict) -> dict:
    """The ``params`` entries of the physics options (with what was drawn for them)."""
    shared = None
    if options.shared is not None:
        shared = {
            "pair": list(options.shared),
            "crystals": [1, 2],
            "cosine_similarity": crystal_info[1]["max_similarity"],
        }
    return {
        "beam_depletion": options.depletion,
        "beam_saturation": details.get("saturation"),
        "absorption": options.absorption,
        "detector": options.detector,
        "descan": options.descan,
        "descan_directions": details.get("descan"),
        "dynamical": options.dynamical,
        "extinction_lengths": details.get("extinction"),
        "shared_reflections": shared,
        "overlap_physics": options.overlap,
        "double_diffraction": details.get("double_diffraction"),
    }
