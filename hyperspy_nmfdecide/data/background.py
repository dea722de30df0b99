"""The background source: the direct beam and the diffuse scattering around it.

A Gaussian disc for the beam, a halo decaying from it and two faint amorphous rings of a
carbon support film, each carrying a fixed share of the incident electrons.
"""

from __future__ import annotations

import numpy as np

from .layouts import _smooth_field
from .render import _radius, _render_spots

__all__ = [
    "_BACKGROUNDS",
    "_BEAM_FRACTION",
    "_background_parts",
    "_background_record",
    "_halo_shape",
    "_rings_shape",
    "_with_background",
]

_BACKGROUNDS = ("uniform", "varying", "none")
# Share of the incident electrons in each part of the background source (the rest of the
# diffuse scattering falls outside the detector or is absorbed in the model).
_BEAM_FRACTION = 0.70
_HALO_FRACTION = 0.22
_RING_FRACTION = 0.08
_HALO_WIDTH = 0.2  # Å^-1, half width of the diffuse halo around the beam
# Amorphous carbon support: rings at 1/2.13 Å and 1/1.17 Å (position, width, relative weight).
_RINGS = ((0.47, 0.045, 0.7), (0.855, 0.06, 0.3))


def _background_parts(
    direct_beam: bool, background: str, size: int, centre, scale: float, sigma: float
) -> tuple[list[np.ndarray], dict[str, float]]:
    """The parts of the background source and the share of the incident electrons in each.

    Returns the list of part images (each a share times a unit image) and a dict naming the
    shares (``"beam"``, ``"halo"``, ``"rings"``, for the parts present).
    """
    parts, fractions = [], {}
    if direct_beam:
        parts.append(_BEAM_FRACTION * _render_spots(np.array([centre]), np.ones(1), size, sigma))
        fractions["beam"] = _BEAM_FRACTION
    if background != "none":
        parts.append(_HALO_FRACTION * _halo(size, centre, scale))
        parts.append(_RING_FRACTION * _rings(size, centre, scale))
        fractions.update(halo=_HALO_FRACTION, rings=_RING_FRACTION)
    if direct_beam and background == "none":
        parts[0] /= _BEAM_FRACTION  # no diffuse scattering: the beam carries it all
        fractions["beam"] = 1.0
    return parts, fractions


def _with_background(
    parts: list[np.ndarray],
    background: str,
    rng: np.random.Generator,
    patterns: np.ndarray,
    crystal_weights: np.ndarray,
):
    """Sources and weights with the background source first (if it has parts), unscaled.

    Returns the sources, the weights, the background weight's (min, max) or None, and the sum
    of the background parts (the background weight is the incident intensity times it).
    """
    if not parts:
        return patterns, crystal_weights, None, 1.0
    ny, nx = crystal_weights.shape[:2]
    bg_pattern = np.sum(parts, axis=0)
    total = bg_pattern.sum()
    if background == "varying":
        bg_weight = 1 + 0.3 * _smooth_field(rng, ny, nx, gradient=True)
    else:
        bg_weight = np.ones((ny, nx))
    bg_range = [float(bg_weight.min()), float(bg_weight.max())]
    sources = np.concatenate([(bg_pattern / total)[np.newaxis], patterns])
    weights = np.concatenate([(bg_weight * total)[..., np.newaxis], crystal_weights], axis=-1)
    return sources, weights, bg_range, total


def _background_record(background: str, direct_beam: bool) -> dict[str, float]:
    """Share of the incident electrons in each part of the background source, for ``params``."""
    diffuse = background != "none"
    return {
        "direct_beam": (_BEAM_FRACTION if diffuse else 1.0) * direct_beam,
        "halo": _HALO_FRACTION if diffuse else 0.0,
        "rings": _RING_FRACTION if diffuse else 0.0,
    }


def _halo_shape(k: np.ndarray) -> np.ndarray:
    """Unnormalised diffuse halo at scattering vectors ``k`` (Å^-1) from the beam."""
    return (1 + (k / _HALO_WIDTH) ** 2) ** -1.5


def _rings_shape(k: np.ndarray) -> np.ndarray:
    """Unnormalised amorphous rings at scattering vectors ``k`` (Å^-1) from the beam."""
    return sum(w * np.exp(-0.5 * ((k - k0) / s) ** 2) for k0, s, w in _RINGS)


def _halo(size: int, centre, scale: float) -> np.ndarray:
    """Diffuse scattering decaying from the beam, normalised to sum 1 on the detector."""
    k = _radius(size, centre) * scale
    halo = _halo_shape(k)
    return halo / halo.sum()


def _rings(size: int, centre, scale: float) -> np.ndarray:
    """Amorphous support-film rings, normalised to sum 1 on the detector."""
    k = _radius(size, centre) * scale
    rings = _rings_shape(k)
    return rings / rings.sum()
