"""The crystal sources of a scan: each crystal's spot pattern at a seeded orientation.

The orientations are drawn so that the crystal patterns stay distinct (or, with
``shared_reflections``, two phases share one orientation); the reflections come from
:mod:`.crystals`, the rendering from :mod:`.render`.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np

from .crystals import (
    _CRYSTAL_DATA,
    _ZONES,
    _count_spots,
    _draw_orientation,
    _phase,
    _reflections,
    _rotation_matrix,
)
from .render import _render_spots, _spot_table

_logger = logging.getLogger(__name__)

__all__ = ["_CrystalSources", "_crystal_sources"]

_MAX_SIMILARITY = 0.8  # cosine similarity allowed between two crystal patterns
_MIN_SPOTS = 6  # reflections with > 2 % of the strongest one, on the detector


class _CrystalSource(NamedTuple):
    """One crystal source: its normalised pattern and what describes it."""

    pattern: np.ndarray  # (H, W), sums to 1
    info: dict  # description (phase, orientation, ...) for params
    spots: np.ndarray  # (n, 3) on-detector spots: x, y and share of the pattern's counts
    reflections: tuple[np.ndarray, np.ndarray]  # disc centres (n, 2), pixels; disc amplitudes


class _CrystalSources(NamedTuple):
    """The crystal sources in order: the fields of :class:`_CrystalSource` as lists."""

    patterns: list[np.ndarray]
    infos: list[dict]  # each starting with "name": "crystal j"
    spots: list[np.ndarray]
    reflections: list[tuple[np.ndarray, np.ndarray]]


def _crystal_sources(
    names: list[str],
    n_crystals: int,
    rng: np.random.Generator,
    shared: tuple[str, str] | None,
    default_names: bool,
    size: int,
    scale: float,
    centre: tuple[float, float],
    sigma: float,
) -> _CrystalSources:
    """The crystal sources: patterns, descriptions, spot tables and reflections, in order.

    With ``shared`` (a pair of phase names), crystals 1 and 2 are that pair at one orientation
    and ``names`` (cycled; without the pair's phases when they are the seeded default) name
    the others.  Each reflection list is (xy, amplitude): disc centres in pixels and disc
    amplitudes that render the normalised pattern.
    """
    first = 0
    if shared is not None:
        names = [n for n in names if not (default_names and n in shared)]
        first = 2
    found = _CrystalSources([], [], [], [])
    for j in range(n_crystals):
        if shared is not None and j == 1:
            source = _twin_source(
                shared[1], found.infos[0], found.patterns[0], size, scale, centre, sigma
            )
        else:
            name = shared[0] if shared is not None and j == 0 else names[(j - first) % len(names)]
            source = _crystal_source(name, rng, found.patterns, size, scale, centre, sigma)
        found.patterns.append(source.pattern)
        found.infos.append({"name": f"crystal {j + 1}", **source.info})
        found.spots.append(source.spots)
        found.reflections.append(source.reflections)
    return found


def _crystal_source(name, rng, previous, size, scale, centre, sigma) -> _CrystalSource:
    """One crystal's normalised spot pattern: the most distinct of a few random orientations.

    Up to 25 orientations are drawn; the first with at least ``_MIN_SPOTS`` spots and a cosine
    similarity of at most ``_MAX_SIMILARITY`` to every ``previous`` pattern is taken, else the
    best of them (enough spots first, then the least similar).
    """
    zones = _ZONES["hexagonal" if _CRYSTAL_DATA[name][2][5] == 120.0 else "cubic"]
    best = None
    for _ in range(25):
        orientation = _draw_orientation(rng, zones)
        matrix = _rotation_matrix(_phase(name), *orientation)
        xy, intensity = _reflections(name, matrix, size, scale, centre, sigma)
        n_spots = _count_spots(xy, intensity, size)
        if n_spots == 0:
            continue
        pattern, total = _normalised_pattern(xy, intensity, size, sigma)
        unit = pattern.ravel() / np.linalg.norm(pattern)
        similarity = max(
            (float(unit @ p.ravel()) / np.linalg.norm(p) for p in previous), default=0.0
        )
        score = (n_spots >= _MIN_SPOTS and similarity <= _MAX_SIMILARITY, -similarity)
        if best is None or score > best[0]:
            best = (score, orientation, matrix, n_spots, similarity, xy, intensity, pattern, total)
        if score[0]:
            break
    if best is None:
        raise _no_reflection_error(name, scale, size)
    _, orientation, matrix, n_spots, similarity, xy, intensity, pattern, total = best
    zone, tilt, tilt_azimuth, in_plane = orientation
    angles = {
        "zone_axis": list(zone),
        "tilt_deg": math.degrees(tilt),
        "tilt_azimuth_deg": math.degrees(tilt_azimuth),
        "in_plane_deg": math.degrees(in_plane),
    }
    info = _crystal_info(name, angles, matrix, n_spots, similarity)
    _logger.debug("%s at [%s]: %d spots", name, info["zone_axis"], n_spots)
    spots = _spot_table(xy, intensity, size, sigma, total)
    return _CrystalSource(pattern, info, spots, (xy, intensity / total))


def _normalised_pattern(
    xy: np.ndarray, intensity: np.ndarray, size: int, sigma: float
) -> tuple[np.ndarray, float]:
    """The rendered spot pattern normalised to sum 1, and the sum it was divided by."""
    pattern = _render_spots(xy, intensity, size, sigma)
    total = pattern.sum()
    pattern /= total
    return pattern, total


def _crystal_info(
    name: str, angles: dict, matrix: np.ndarray, n_spots: int, similarity: float
) -> dict:
    """The description of a crystal source in ``params`` (``angles``: zone axis and tilts)."""
    kind, space_group, cell, _, _ = _CRYSTAL_DATA[name]
    return {
        "phase": name,
        "structure": kind,
        "space_group": space_group,
        "lattice": list(cell),
        **angles,
        "rotation_matrix": matrix,
        "n_spots": n_spots,
        "max_similarity": similarity,
    }


def _no_reflection_error(name: str, scale: float, size: int) -> ValueError:
    """The error for a crystal none of whose reflections reaches the detector."""
    return ValueError(
        f"no reflection of {name} falls on the detector: k_max ({scale * size / 2:g} Å^-1 "
        "at the detector edge) is too small"
    )


def _twin_source(
    name: str,
    partner: dict,
    partner_pattern: np.ndarray,
    size: int,
    scale: float,
    centre: tuple[float, float],
    sigma: float,
) -> _CrystalSource:
    """Crystal ``name`` at the orientation of ``partner`` (its description), for shared spots.

    The two phases have nearly the same lattice, so their reflections largely coincide; the
    rule keeping crystal patterns distinct is not applied.  ``max_similarity`` is the cosine
    similarity to the partner.
    """
    matrix = np.asarray(partner["rotation_matrix"], dtype=float)
    xy, intensity = _reflections(name, matrix, size, scale, centre, sigma)
    n_spots = _count_spots(xy, intensity, size)
    if n_spots == 0:
        raise _no_reflection_error(name, scale, size)
    pattern, total = _normalised_pattern(xy, intensity, size, sigma)
    norms = np.linalg.norm(pattern) * np.linalg.norm(partner_pattern)
    similarity = float(pattern.ravel() @ partner_pattern.ravel()) / norms
    angles = {k: partner[k] for k in ("zone_axis", "tilt_deg", "tilt_azimuth_deg", "in_plane_deg")}
    info = _crystal_info(name, angles, matrix, n_spots, similarity)
    info["shares_reflections_with"] = partner["name"]
    spots = _spot_table(xy, intensity, size, sigma, total)
    return _CrystalSource(pattern, info, spots, (xy, intensity / total))
