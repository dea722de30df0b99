"""The arguments of :func:`~hyperspy_nmfdecide.data.simulated_scan`, checked together."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .background import _BACKGROUNDS
from .checks import (
    _check_beam_offset,
    _check_crystals,
    _check_dtype,
    _check_int,
    _check_nav_shape,
    _check_positive,
)
from .layouts import _LAYOUTS
from .options import _check_options, _Options

__all__ = ["MIN_K_MAX", "MIN_PATTERN_SIZE", "_Arguments", "_check_arguments"]

#: Smallest pattern side accepted, pixels.
MIN_PATTERN_SIZE = 16
#: Smallest scattering vector accepted at the detector edge, Å^-1.
MIN_K_MAX = 0.4


@dataclass(frozen=True)
class _Arguments:
    """The arguments of :func:`simulated_scan`, as given or checked by :func:`_check_arguments`.

    Checking sets ``options`` and replaces the values it converts: ``nav_shape`` becomes (ny,
    nx) ints, ``beam_offset`` two floats, ``dtype`` a numpy dtype, ``crystals`` a list of names
    or None, the sizes ints and the positive numbers floats.  The others stay as given (as
    ``params`` records them); ``random_state`` is checked by :func:`.seeds._seed_sequence`.
    """

    nav_shape: tuple[int, int]
    pattern_size: int
    n_crystals: int
    layout: str
    dose: float
    background: str
    direct_beam: bool
    beam_offset: tuple[float, float]
    lazy: bool
    chunks: int | None
    dtype: np.dtype
    random_state: int | np.random.Generator | np.random.SeedSequence | None
    crystals: list[str] | None
    k_max: float
    spot_sigma: float
    probe_step: float
    gradient_ratio: float
    thickness_variation: float
    edge_width: float
    presence_threshold: float
    beam_depletion: bool | float
    absorption: float
    detector: dict | None
    descan: float
    dynamical: float
    shared_reflections: bool | tuple[str, str]
    overlap_physics: float
    options: _Options | None = None

    @property
    def scale(self) -> float:
        """Reciprocal pixel size, Å^-1 per pixel (``k_max`` at half the detector width)."""
        return self.k_max / (self.pattern_size / 2)

    @property
    def centre(self) -> tuple[float, float]:
        """Position (x, y) of the direct beam, pixel index units."""
        size = self.pattern_size
        return (size / 2 + self.beam_offset[0], size / 2 + self.beam_offset[1])


def _check_arguments(raw: _Arguments) -> _Arguments:
    """``raw`` checked and normalised, with its physics ``options``.

    The checks run in the order of the signature (those that depend on others after them), so
    the first invalid argument is the one reported.
    """
    ny, nx = _check_nav_shape(raw.nav_shape)
    size = _check_int(raw.pattern_size, "pattern_size", MIN_PATTERN_SIZE)
    n_crystals = _check_int(raw.n_crystals, "n_crystals", 1)
    if raw.layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {raw.layout!r}")
    if raw.background not in _BACKGROUNDS:
        raise ValueError(f"background must be one of {_BACKGROUNDS}, got {raw.background!r}")
    dose = _check_positive(raw.dose, "dose")
    k_max = _check_positive(raw.k_max, "k_max")
    if k_max < MIN_K_MAX:
        raise ValueError(
            f"k_max must be ≥ {MIN_K_MAX} Å^-1 so that first-order reflections reach the "
            f"detector, got {k_max!r}"
        )
    spot_sigma = _check_positive(raw.spot_sigma, "spot_sigma")
    probe_step = _check_positive(raw.probe_step, "probe_step")
    edge_width = _check_positive(raw.edge_width, "edge_width")
    _check_layout_numbers(raw, ny * nx, n_crystals)
    offset, room = _check_beam_offset(raw.beam_offset, size, spot_sigma)
    dtype = _check_dtype(raw.dtype)
    chunks = None if raw.chunks is None else _check_int(raw.chunks, "chunks", 1)
    names = None if raw.crystals is None else _check_crystals(raw.crystals)
    options = _check_options(
        beam_depletion=raw.beam_depletion,
        absorption=raw.absorption,
        detector=raw.detector,
        descan=raw.descan,
        dynamical=raw.dynamical,
        shared_reflections=raw.shared_reflections,
        overlap_physics=raw.overlap_physics,
        n_crystals=n_crystals,
        direct_beam=raw.direct_beam,
        dtype=dtype,
        room=room,
    )
    return replace(
        raw,
        nav_shape=(ny, nx),
        pattern_size=size,
        n_crystals=n_crystals,
        dose=dose,
        k_max=k_max,
        spot_sigma=spot_sigma,
        probe_step=probe_step,
        edge_width=edge_width,
        beam_offset=offset,
        dtype=dtype,
        chunks=chunks,
        crystals=names,
        options=options,
    )


def _check_layout_numbers(raw: _Arguments, n_probes: int, n_crystals: int) -> None:
    """Check the numbers shaping the crystals' maps, and that the grains fit in the scan."""
    if not (np.isfinite(raw.gradient_ratio) and raw.gradient_ratio > 1):
        raise ValueError(f"gradient_ratio must be > 1, got {raw.gradient_ratio!r}")
    if not 0 <= raw.thickness_variation < 1:
        raise ValueError(f"thickness_variation must be in [0, 1), got {raw.thickness_variation!r}")
    if not 0 < raw.presence_threshold < 1:
        raise ValueError(f"presence_threshold must be in (0, 1), got {raw.presence_threshold!r}")
    if raw.layout == "grains" and n_crystals > n_probes:
        raise ValueError(
            f"n_crystals ({n_crystals}) grains do not fit in a scan of {n_probes} probes"
        )
