"""Local refinement of a factor's orientation: the angle about the beam, then the tilt.

The polar template matching of :mod:`hyperspy_nmfdecide.orientation` picks the best point of a
grid: ``resolution`` degrees apart out of plane and the polar factor's azimuthal step (1° at
360 points) in plane.  Measured on simulated Fe and Au crystals tilted up to 1° off their zone
axes, its answer is 0.4–1.8° from the truth in tilt and up to 1.5° in plane.  Two steps refine
it on the factor itself:

1. **In plane, from spot positions.**  Each template spot of the match is paired with the
   centroid of the factor around it, and the turn about the beam that best carries the
   template's spots onto those centroids (a mass-weighted 2-D Procrustes fit, iterated as the
   pairs move) is applied.
2. **Tilt, from spot intensities.**  A tilt moves the Laue circle and so which reflections are
   excited.  The score of a trial orientation is the cosine between its template intensities
   and the factor's integrated spot intensities (the mass in a window around each template
   spot, so the score does not hinge on sub-pixel positions); a pattern search over small
   tilts about axes in the detector plane climbs it, within :data:`MAX_TILT_DEG` of the match.
   The templates use the bank's excitation error.  (Fitting the excitation error as well, at
   0.01, 0.02 and 0.04 Å⁻¹, was tried and dropped: on NMF factors, which carry some noise and
   traces of other crystals, the extra freedom pulled 3 of 12 crystals 3–4° off.)

A zone-axis pattern and the same turned 180° about the beam stay alike (Friedel's law): after
its own tilt refinement the 180° mate scored the same as the match to 4 digits on every crystal
tried, so the refinement keeps the match's choice.

Written here because neither pyxem nor diffsims refine a template match (pyxem's
``get_orientation`` scores a fixed bank only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "MAX_TILT_DEG",
    "CartesianFactor",
    "TiltFit",
    "cartesian_factor",
    "in_plane_correction",
    "intensity_score",
    "refine_tilt",
    "spot_centroids",
]

#: Half-width (pixels) of the window in which a template spot's centroid is measured.
WINDOW_PX = 2
#: Template spots weaker than this fraction of the strongest are not used.
MIN_TEMPLATE_INTENSITY = 0.02
#: Spots holding less than this fraction of the largest spot mass are not used.
MIN_SPOT_MASS = 0.1
#: Procrustes iterations (the pairs are measured again after each turn).
ITERATIONS = 4
#: The tilt search stays within this angle (degrees) of the match.
MAX_TILT_DEG = 2.0
#: First and last step (degrees) of the tilt search.
TILT_STEPS = (0.5, 0.03)


@dataclass(frozen=True)
class CartesianFactor:
    """A factor prepared for spot measurements: background removed, outside the range zeroed.

    Attributes
    ----------
    image : numpy.ndarray
        (ny, nx) float, unit norm.
    offset, scale : numpy.ndarray
        (2,) the (x, y) calibration: pixel ``i`` along x is at ``offset[0] + i * scale[0]`` Å⁻¹.
    radial_range : tuple of float
        Spots outside it (Å⁻¹ from the beam) are not used.
    """

    image: np.ndarray
    offset: np.ndarray
    scale: np.ndarray
    radial_range: tuple[float, float]


def cartesian_factor(
    factor: np.ndarray,
    offset: Sequence[float],
    scale: Sequence[float],
    radial_range: tuple[float, float],
) -> CartesianFactor:
    """Prepare one (ny, nx) factor: the per-radius median removed (clipped at 0), unit norm.

    The same background removal as the polar factors (a diffuse halo or rings is not a spot).

    Examples
    --------
    >>> f = np.ones((9, 9)); f[4, 6] = 5.0
    >>> c = cartesian_factor(f, (-4.0, -4.0), (1.0, 1.0), (1.0, 4.0))
    >>> float(c.image[4, 6]), float(c.image.sum())
    (1.0, 1.0)
    """
    image = np.asarray(factor, dtype=float)
    offset = np.asarray(offset, dtype=float)
    scale = np.asarray(scale, dtype=float)
    ny, nx = image.shape
    x = offset[0] + scale[0] * np.arange(nx)
    y = offset[1] + scale[1] * np.arange(ny)
    radius = np.hypot(*np.meshgrid(x, y))
    rings = np.round(radius / np.min(np.abs(scale))).astype(int)
    medians = np.zeros(rings.max() + 1)
    for ring in np.unique(rings):
        medians[ring] = np.median(image[rings == ring])
    image = np.clip(image - medians[rings], 0.0, None)
    image[(radius < radial_range[0]) | (radius > radial_range[1])] = 0.0
    norm = np.linalg.norm(image)
    return CartesianFactor(image / (norm if norm > 0 else 1.0), offset, scale, radial_range)


def spot_centroids(factor: CartesianFactor, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid (Å⁻¹) and mass of the factor in a window around each position ``xy`` (Å⁻¹).

    Examples
    --------
    >>> f = np.zeros((9, 9)); f[4, 6] = 1.0; f[4, 7] = 1.0
    >>> c = cartesian_factor(f, (-4.0, -4.0), (1.0, 1.0), (0.0, 4.0))
    >>> centroid, mass = spot_centroids(c, np.array([[2.0, 0.0]]))
    >>> centroid.round(2).tolist(), bool(mass[0] > 0)
    ([[2.5, 0.0]], True)
    """
    ny, nx = factor.image.shape
    pixels = np.rint((xy - factor.offset) / factor.scale).astype(int)
    centroids = np.array(xy, dtype=float)
    mass = np.zeros(len(xy))
    for i, (px, py) in enumerate(pixels):
        x0, x1 = max(px - WINDOW_PX, 0), min(px + WINDOW_PX + 1, nx)
        y0, y1 = max(py - WINDOW_PX, 0), min(py + WINDOW_PX + 1, ny)
        window = factor.image[y0:y1, x0:x1]
        mass[i] = window.sum()
        if mass[i] > 0:
            rows, cols = np.mgrid[y0:y1, x0:x1]
            centroids[i] = factor.offset + factor.scale * (
                np.array([(window * cols).sum(), (window * rows).sum()]) / mass[i]
            )
    return centroids, mass


def in_plane_correction(
    factor: CartesianFactor, xy: np.ndarray, intensity: np.ndarray
) -> tuple[float, int]:
    """The turn about the beam (radians, counter-clockwise in the detector's x, y) that
    carries a template's spots onto the factor's spot centroids, and the spots used.

    Template spots inside the radial range and above :data:`MIN_TEMPLATE_INTENSITY` of the
    strongest are paired with the factor's centroid around them; pairs holding less than
    :data:`MIN_SPOT_MASS` of the largest mass (no spot there) are dropped; the angle is the
    mass-weighted 2-D Procrustes rotation about the beam, measured again after each turn.

    Examples
    --------
    >>> f = np.zeros((41, 41))
    >>> for x, y in ((10.0, 1.0), (-1.0, 10.0), (-10.0, -1.0), (1.0, -10.0)):  # 5.7° turned
    ...     f[int(y) + 20, int(x) + 20] = 1.0
    >>> c = cartesian_factor(f, (-20.0, -20.0), (1.0, 1.0), (2.0, 15.0))
    >>> spots = np.array([[10.0, 0.0], [0.0, 10.0], [-10.0, 0.0], [0.0, -10.0]])
    >>> angle, used = in_plane_correction(c, spots, np.ones(4))
    >>> round(float(np.degrees(angle)), 1), used
    (5.7, 4)
    """
    radius = np.hypot(xy[:, 0], xy[:, 1])
    keep = (radius >= factor.radial_range[0]) & (radius <= factor.radial_range[1])
    keep &= intensity > MIN_TEMPLATE_INTENSITY * intensity.max(initial=0.0)
    spots = np.asarray(xy, dtype=float)[keep]
    angle, used = 0.0, 0
    for _ in range(ITERATIONS):
        turned = spots @ _turn(angle).T
        centroids, mass = spot_centroids(factor, turned)
        use = mass > MIN_SPOT_MASS * mass.max(initial=0.0)
        used = int(use.sum())
        if used < 2:
            return 0.0, used
        p, c, m = turned[use], centroids[use], mass[use]
        cross = np.sum(m * (p[:, 0] * c[:, 1] - p[:, 1] * c[:, 0]))
        angle += float(np.arctan2(cross, np.sum(m * np.sum(p * c, axis=1))))
    return angle, used


def intensity_score(factor: CartesianFactor, xy: np.ndarray, intensity: np.ndarray) -> float:
    """Cosine between a template's intensities and the factor's mass around each of its spots
    (spots inside the radial range only; 0 when none is).

    Examples
    --------
    >>> f = np.zeros((21, 21)); f[10, 15] = 2.0; f[10, 5] = 1.0
    >>> c = cartesian_factor(f, (-10.0, -10.0), (1.0, 1.0), (2.0, 9.0))
    >>> spots = np.array([[5.0, 0.0], [-5.0, 0.0]])
    >>> round(intensity_score(c, spots, np.array([2.0, 1.0])), 3)
    1.0
    >>> round(intensity_score(c, spots, np.array([1.0, 2.0])), 3)
    0.8
    """
    radius = np.hypot(xy[:, 0], xy[:, 1])
    keep = (radius >= factor.radial_range[0]) & (radius <= factor.radial_range[1])
    if not keep.any():
        return 0.0
    weight = np.asarray(intensity, dtype=float)[keep]
    _, mass = spot_centroids(factor, np.asarray(xy, dtype=float)[keep])
    norm = np.linalg.norm(weight) * np.linalg.norm(mass)
    return float(weight @ mass / norm) if norm > 0 else 0.0


@dataclass(frozen=True)
class TiltFit:
    """The tilt refinement of one orientation.

    Attributes
    ----------
    rotation : orix.quaternion.Rotation
        The refined orientation.
    score : float
        Its :func:`intensity_score`.
    start_score : float
        The score of the start.
    """

    rotation: object
    score: float
    start_score: float


def refine_tilt(factor: CartesianFactor, simulate, start) -> TiltFit:
    """Climb :func:`intensity_score` over small tilts of ``start`` (a pattern search over tilts
    about 8 axes in the detector plane; the step halves when none is better).

    Parameters
    ----------
    factor : CartesianFactor
    simulate : callable
        ``simulate(rotations) -> list of (xy, intensity)``, one spot list per rotation (xy in
        Å⁻¹).
    start : orix.quaternion.Rotation
        (1,) the orientation to refine.
    """
    from orix.quaternion import Rotation

    def scores(rotations):
        return np.array([intensity_score(factor, *spots) for spots in simulate(rotations)])

    axes = np.column_stack([np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)])
    axes = np.column_stack([axes, np.zeros(8)])
    center, (best,) = start, scores(start)
    first, step = best, TILT_STEPS[0]
    while step >= TILT_STEPS[1]:
        trial = center * Rotation.from_axes_angles(axes, np.radians(step))
        within = (~start * trial).angle <= np.radians(MAX_TILT_DEG)
        if not within.any():
            step /= 2.0
            continue
        trial = trial[within]
        values = scores(trial)
        j = int(np.argmax(values))
        if values[j] > best:
            center, best = trial[j], float(values[j])
        else:
            step /= 2.0
    return TiltFit(center, float(best), float(first))


def _turn(angle: float) -> np.ndarray:
    """The 2-D rotation matrix of ``angle`` radians."""
    cos, sin = np.cos(angle), np.sin(angle)
    return np.array([[cos, -sin], [sin, cos]])
