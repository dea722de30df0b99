"""The direct beam of a scan: where it is, how large it is, and the mask that leaves it out.

Why the default sweep leaves the beam out: where crystals scatter electrons, the beam keeps
what they do not take, so its weight at a probe is the incident intensity minus the crystals'
(``1 − Σ`` crystal weights, times an absorption factor).  No non-negative factorisation
represents a source whose weight falls where the others rise, and the beam holds the brightest
pixels of every pattern: left in, NMF bends every component to fit them.  Uesugi et al. (2021)
mask it; so does the default of ``nmf_sweep``.

The beam is found on the mean pattern of the scan (pyxem's blur-maximum finder,
:func:`pyxem.utils.diffraction.find_beam_center_blur`, refined to sub-pixel by the centre of
mass of the disc) and its radius is measured from its own azimuthal profile
(:func:`find_direct_beam`), not set by hand: a convergent-beam disc of 12 pixels and a focused
spot of 2 get masks that fit them, and a beam that moves across the scan (descan) is masked
over the whole range it covers in the mean pattern.  No HyperSpy import happens here.

Examples
--------
>>> import numpy as np
>>> from hyperspy_nmfdecide.beam import find_direct_beam
>>> yy, xx = np.indices((64, 64))
>>> mean = 500 * np.exp(-((xx - 30.0) ** 2 + (yy - 35.0) ** 2) / (2 * 1.2**2)) + 1.0
>>> beam = find_direct_beam(mean)
>>> beam.found, [round(v) for v in beam.position], round(beam.radius, 1)
(True, [30, 35], 4.1)
>>> int(beam.mask((64, 64)).sum())
49
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

_logger = logging.getLogger(__name__)

__all__ = ["BEAM_TAIL", "DirectBeam", "beam_disc", "find_direct_beam"]

#: The mask reaches out to where the beam's excess over the diffuse background around it has
#: fallen to this fraction of its peak (a Gaussian spot: 3.0 σ; a blurred disc: its radius plus
#: 2.3 blur σ), plus :data:`MARGIN` pixels for the pixel grid.
BEAM_TAIL = 0.01
#: Pixels added to the measured radius.
MARGIN = 0.5
#: A beam rises at least this many times above the diffuse level at its half-maximum radius
#: (a saturated beam on the bright halo of a thick sample: ~2.7×; a flat pattern: 0) ...
MIN_CONTRAST = 1.5
#: ... and holds at least this share of the mean pattern's intensity, unless it rises more than
#: :data:`CLEAR_CONTRAST` times above its surroundings (a Bragg spot of the mean pattern holds a
#: few per mille: a crystal scatters a fraction of the beam into many spots, over part of the scan).
MIN_SHARE = 0.05
CLEAR_CONTRAST = 10.0
#: The pattern around the beam is centrosymmetric (Friedel's law, and halos and rings are
#: round): correlation of the log pattern with its point reflection through the beam, outside
#: the mask, measured 0.72-1.0 on simulated (20-5000 e⁻), pyxem and instrument scans; through the
#: brightest Bragg spot of simulated patterns without a beam 0.44 at most.
MIN_SYMMETRY = 0.5
#: The beam's half-maximum radius is at most this fraction of the smaller pattern side, and the
#: mask at most :data:`MAX_RADIUS_FRACTION` of it.
MAX_HALF_RADIUS_FRACTION = 0.15
MAX_RADIUS_FRACTION = 0.3
#: Profile bin width, pixels.
_STEP = 0.5


@dataclass(frozen=True)
class DirectBeam:
    """The direct beam found on a mean pattern, or why none was found.

    Attributes
    ----------
    found : bool
        Whether a direct beam was recognised.
    position : tuple of float or None
        (x, y) of its centre in pixels (pixel i spans i ± 0.5; x = column).
    radius : float or None
        Radius of the mask, pixels: where the beam's excess over its surroundings has fallen
        to :data:`BEAM_TAIL` of its peak, plus :data:`MARGIN`.
    half_radius : float or None
        Radius at half the beam's height above its surroundings, pixels.
    contrast : float
        Peak of the beam over the diffuse level just outside it (0 when no peak was found).
    share : float
        Share of the mean pattern's intensity inside the mask (0 when not found).
    symmetry : float
        Correlation of the pattern with its point reflection through the peak (NaN when not
        measured).
    reason : str
        One sentence: what was found, or why nothing was.
    """

    found: bool
    position: tuple[float, float] | None
    radius: float | None
    half_radius: float | None
    contrast: float
    share: float
    symmetry: float
    reason: str

    def mask(self, shape: tuple[int, int]) -> np.ndarray | None:
        """Boolean disc (True = excluded) of this beam on a pattern of ``shape``, or None."""
        if not self.found:
            return None
        return beam_disc(shape, self.position, self.radius)

    def to_dict(self) -> dict:
        """JSON-ready record of the beam (for ``sweep.params`` and reports)."""
        out = asdict(self)
        if self.position is not None:
            out["position"] = [float(v) for v in self.position]
        return out


def beam_disc(shape: tuple[int, int], position, radius: float) -> np.ndarray:
    """Boolean disc of ``radius`` pixels around ``position`` = (x, y) on a ``shape`` grid.

    Examples
    --------
    >>> int(beam_disc((5, 5), (2, 2), 1).sum())
    5
    """
    yy, xx = np.indices(tuple(int(v) for v in shape))
    x0, y0 = (float(v) for v in position)
    return (xx - x0) ** 2 + (yy - y0) ** 2 <= float(radius) ** 2


def find_direct_beam(mean_pattern: np.ndarray, *, sigma: float | None = None) -> DirectBeam:
    """Locate the direct beam on a mean pattern and measure its radius from its own profile.

    1. The centre: the maximum of the pattern blurred by a Gaussian of ``sigma`` pixels
       (pyxem's ``find_beam_center_blur``), refined by the centre of mass of the excess
       intensity within the half-maximum radius.
    2. The azimuthal profile around it (bins of half a pixel).  The diffuse level outside the
       beam is the profile's trend between 3 and 6 half-maximum radii (a power law in r, fitted
       in log-log and extrapolated inwards: halos decay smoothly), the beam is the excess over
       it, and the mask radius is where that excess falls to :data:`BEAM_TAIL` of its peak, or
       1.1 edge widths (its 90-10 % fall) past its half height if that comes first, plus
       :data:`MARGIN`.
    3. The beam is *found* only when it is a compact peak standing out from its surroundings:
       at least :data:`MIN_CONTRAST` times the diffuse level at its half-maximum radius and
       holding :data:`MIN_SHARE` of the intensity (or :data:`CLEAR_CONTRAST` times above its
       surroundings), with a half-maximum radius of at most
       :data:`MAX_HALF_RADIUS_FRACTION` of the pattern and a mask of at most
       :data:`MAX_RADIUS_FRACTION`, at a centre of symmetry of the pattern
       (:data:`MIN_SYMMETRY`: the bright Bragg spot of a pattern without its beam is not).
       Otherwise nothing is masked and ``reason`` says why.

    Parameters
    ----------
    mean_pattern : numpy.ndarray
        (H, W) mean diffraction pattern of the scan, finite (its minimum is taken as a dark
        offset and subtracted).
    sigma : float, optional
        Blur of the centre finder, pixels (default 1 % of the larger pattern side, at least 1).

    Returns
    -------
    DirectBeam

    Examples
    --------
    >>> flat = np.ones((32, 32))
    >>> beam = find_direct_beam(flat)
    >>> beam.found, beam.mask((32, 32)) is None
    (False, True)
    """
    from pyxem.utils.diffraction import find_beam_center_blur

    pattern = np.asarray(mean_pattern, dtype=np.float64)
    if pattern.ndim != 2 or min(pattern.shape) < 8:
        raise ValueError(
            f"mean_pattern must be a 2-D pattern of ≥ 8 × 8 pixels, got {pattern.shape}"
        )
    if not np.isfinite(pattern).all():
        raise ValueError("the mean pattern holds NaN or infinite values")
    if not pattern.max() > pattern.min():
        return _not_found("the mean pattern is flat: no direct beam to mask")
    # A detector's dark offset is no part of the beam's share or contrast.
    pattern = pattern - pattern.min()
    side = min(pattern.shape)
    sigma = max(1.0, 0.01 * max(pattern.shape)) if sigma is None else float(sigma)
    centre = np.asarray(find_beam_center_blur(pattern, sigma), dtype=float)  # (x, y)

    profile, radii = _profile(pattern, centre)
    half = _half_radius(profile, radii)
    if half is None or half > MAX_HALF_RADIUS_FRACTION * side:
        return _not_found(
            "the brightest feature of the mean pattern is not a compact peak (half-maximum "
            f"radius {'undefined' if half is None else f'{half:.1f} px'}): no direct beam masked"
        )
    centre = _refined_centre(pattern, centre, half)
    profile, radii = _profile(pattern, centre)
    half = _half_radius(profile, radii) or half
    trend = _outer_trend(profile, radii, half)
    excess = profile - trend
    peak = float(excess[:2].max())
    surroundings = float(np.interp(half, radii, trend))
    contrast = peak / surroundings if surroundings > peak * 1e-12 else 1e12
    if not contrast >= MIN_CONTRAST:
        return _not_found(
            f"the brightest peak of the mean pattern rises only {contrast:.1f}× above its "
            f"surroundings (a direct beam: ≥ {MIN_CONTRAST:g}×): no direct beam masked",
            contrast,
        )
    radius = _edge(excess, radii, peak, half) + MARGIN
    if radius > MAX_RADIUS_FRACTION * side:
        return _not_found(
            f"the beam's tail reaches {radius:.1f} px, more than {MAX_RADIUS_FRACTION:.0%} of "
            "the pattern: not masked (pass signal_mask to mask it by hand)",
            contrast,
        )
    position = (float(centre[0]), float(centre[1]))
    disc = beam_disc(pattern.shape, position, radius)
    share = float(pattern[disc].sum() / pattern.sum()) if pattern.sum() > 0 else 0.0
    if share < MIN_SHARE and contrast < CLEAR_CONTRAST:
        return _not_found(
            f"the brightest peak of the mean pattern holds {share:.1%} of its intensity and "
            f"rises {contrast:.1f}× above its surroundings: a Bragg spot, not a direct beam "
            "(not masked)",
            contrast,
        )
    symmetry = _point_symmetry(pattern, position, radius)
    if not symmetry >= MIN_SYMMETRY:
        return _not_found(
            f"the brightest peak of the mean pattern, at ({position[0]:.1f}, {position[1]:.1f}) "
            f"px, is not a centre of symmetry of the pattern (correlation {symmetry:.2f} with "
            "its point reflection): a Bragg spot, not a direct beam (not masked)",
            contrast,
            symmetry,
        )
    reason = (
        f"direct beam at ({position[0]:.1f}, {position[1]:.1f}) px, half-maximum radius "
        f"{half:.1f} px, masked to {radius:.1f} px where its profile ends ({contrast:.0f}× "
        f"its surroundings; {share:.0%} of the mean pattern's intensity)"
    )
    _logger.info(reason)
    return DirectBeam(True, position, radius, half, contrast, share, symmetry, reason)


def _edge(excess: np.ndarray, radii: np.ndarray, peak: float, half: float) -> float:
    """Where the beam ends: its 1 % point, or 1.1 edge widths past half height if sooner.

    The edge width is the 90-10 % fall of the excess.  A Gaussian spot reaches 1 % at 3.0 σ,
    ``half + 1.1 width`` at 3.0 σ too; a blurred disc reaches them at its radius + 2.3 and
    + 2.8 blur σ.  The width rule keeps a bright halo that the outer trend under-estimates
    near the beam from stretching the mask (a saturated beam on a thick sample's halo).
    """

    def first_below(fraction: float) -> float:
        below = np.flatnonzero(excess <= fraction * peak)
        return float(radii[below[0]]) if below.size else float(radii[-1])

    tail = first_below(BEAM_TAIL)
    width = first_below(0.1) - first_below(0.9)
    return max(min(tail, half + 1.1 * width), half)


def _not_found(reason: str, contrast: float = 0.0, symmetry: float = float("nan")) -> DirectBeam:
    _logger.info(reason)
    return DirectBeam(False, None, None, None, float(contrast), 0.0, float(symmetry), reason)


def _point_symmetry(pattern: np.ndarray, centre: tuple[float, float], radius: float) -> float:
    """Correlation of ``log(1 + pattern / mean)`` with its reflection through ``centre``.

    Over the pixels outside ``radius`` whose mirror image lies on the detector (linear
    interpolation at the mirror position); NaN when fewer than 16 such pixels or no contrast.
    """
    from scipy import ndimage

    yy, xx = np.indices(pattern.shape, dtype=float)
    mirror_x, mirror_y = 2 * centre[0] - xx, 2 * centre[1] - yy
    height, width = pattern.shape
    usable = (mirror_x >= 0) & (mirror_x <= width - 1) & (mirror_y >= 0)
    usable &= (mirror_y <= height - 1) & (np.hypot(xx - centre[0], yy - centre[1]) > radius)
    if usable.sum() < 16:
        return float("nan")
    # Smoothed by a pixel, so that the shot noise of a low-dose mean does not hide symmetry.
    smooth = ndimage.gaussian_filter(np.clip(pattern, 0, None), 1.0)
    level = max(float(np.mean(smooth[usable])), np.finfo(float).tiny)
    here = np.log1p(smooth[usable] / level)
    mirrored = ndimage.map_coordinates(smooth, [mirror_y[usable], mirror_x[usable]], order=1)
    there = np.log1p(mirrored / level)
    if not (here.std() > 0 and there.std() > 0):
        return float("nan")
    return float(np.corrcoef(here, there)[0, 1])


def _profile(pattern: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal mean of ``pattern`` around ``centre`` (x, y) in bins of :data:`_STEP` px."""
    yy, xx = np.indices(pattern.shape)
    r = np.hypot(xx - centre[0], yy - centre[1])
    # Only radii whose full circle lies on the detector, and at least a quarter of the side.
    reach = max(
        min(
            centre[0], centre[1], pattern.shape[1] - 1 - centre[0], pattern.shape[0] - 1 - centre[1]
        ),
        min(pattern.shape) / 4,
    )
    index = (r / _STEP).astype(int)
    keep = r <= reach
    sums = np.bincount(index[keep], pattern[keep])
    counts = np.bincount(index[keep])
    filled = counts > 0
    radii = (np.arange(sums.size) + 0.5) * _STEP
    return sums[filled] / counts[filled], radii[filled]


def _half_radius(profile: np.ndarray, radii: np.ndarray) -> float | None:
    """First radius where the profile falls to halfway between its peak and its far level."""
    peak = float(profile[:2].max())
    floor = float(np.median(profile[radii >= radii[-1] / 2]))
    below = np.flatnonzero(profile <= floor + 0.5 * (peak - floor))
    if not peak > floor or not below.size:
        return None
    i = int(below[0])
    if i == 0:
        return float(radii[0])
    # Linear interpolation between the bins around the crossing.
    level = floor + 0.5 * (peak - floor)
    r0, r1, p0, p1 = radii[i - 1], radii[i], profile[i - 1], profile[i]
    return float(r0 + (p0 - level) / (p0 - p1) * (r1 - r0)) if p0 != p1 else float(r1)


def _outer_trend(profile: np.ndarray, radii: np.ndarray, half: float) -> np.ndarray:
    """The diffuse level under the beam: a power law fitted between 3 and 6 half radii."""
    window = (radii >= 3 * half) & (radii <= 6 * half) & (profile > 0)
    if window.sum() < 3:
        window = (radii >= radii[-1] / 2) & (profile > 0)
    if window.sum() < 3:
        return np.full_like(profile, float(np.median(profile[radii >= radii[-1] / 2])))
    slope, intercept = np.polyfit(np.log(radii[window]), np.log(profile[window]), 1)
    slope = min(slope, 0.0)  # a diffuse level that rises towards the beam, never away from it
    start = float(radii[window][0])
    trend = np.exp(intercept) * np.maximum(radii, start) ** slope
    return np.minimum(trend, profile.max())


def _refined_centre(pattern: np.ndarray, centre: np.ndarray, half: float) -> np.ndarray:
    """Centre of mass of the excess intensity within ``1.5 × half`` of ``centre`` (x, y)."""
    yy, xx = np.indices(pattern.shape)
    near = np.hypot(xx - centre[0], yy - centre[1]) <= max(1.5 * half, 1.5)
    ring = (np.hypot(xx - centre[0], yy - centre[1]) <= max(3 * half, 3.0)) & ~near
    level = float(np.median(pattern[ring])) if ring.any() else 0.0
    weight = np.clip(pattern - level, 0, None) * near
    total = weight.sum()
    if not total > 0:
        return centre
    refined = np.array([(weight * xx).sum() / total, (weight * yy).sum() / total])
    return refined if math.hypot(*(refined - centre)) <= max(half, 1.0) else centre
