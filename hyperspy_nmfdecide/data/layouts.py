"""Where the crystals of a scan are and how thick: maps over the scan.

Soft-edged blobs that overlap in places (``"overlapping"``, ``"gradient"``) or a Voronoi
tessellation into grains (``"grains"``), smooth thickness variations and a thickness ramp.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import ndimage, special

_logger = logging.getLogger(__name__)

__all__ = [
    "_LAYOUTS",
    "_STRENGTH_RANGE",
    "_coverage",
    "_smooth_field",
    "_thickness",
]

_LAYOUTS = ("overlapping", "grains", "gradient")
_STRENGTH_RANGE = (0.15, 0.45)  # crystal weight relative to the incident (background) weight
_EDGE_CUT = 1e-3  # crystal coverage below this is set to exactly zero


def _coverage(
    rng: np.random.Generator, layout: str, ny: int, nx: int, n: int, edge_width: float
) -> tuple[np.ndarray, dict]:
    """(ny, nx, n) coverage of each crystal in [0, 1] for ``layout``, and its description."""
    if layout == "grains":
        return _grain_layout(rng, ny, nx, n)
    return _blob_layout(rng, ny, nx, n, edge_width)


def _thickness(
    rng: np.random.Generator, coverage: np.ndarray, variation: float, ramp_ratio: float | None
) -> tuple[np.ndarray, dict | None]:
    """(ny, nx, n) local thickness factor of each crystal, and the description of its ramp.

    A smooth variation of relative amplitude ``variation`` around 1 for every crystal; crystal
    1 thickens ``ramp_ratio`` times across its region instead (None: no ramp).
    """
    ny, nx, n = coverage.shape
    thickness = np.empty_like(coverage)
    for j in range(n):
        thickness[..., j] = 1 + variation * _smooth_field(rng, ny, nx)
    ramp_info = None
    if ramp_ratio is not None:
        thickness[..., 0], ramp_info = _thickness_ramp(rng, coverage[..., 0], ramp_ratio)
    return thickness, ramp_info


def _smooth_field(rng, ny: int, nx: int, gradient: bool = False) -> np.ndarray:
    """A smooth random field over the scan, zero mean, scaled to [-1, 1]."""
    noise = rng.standard_normal((ny, nx))
    field_ = ndimage.gaussian_filter(noise, sigma=max(2.0, max(ny, nx) / 3), mode="reflect")
    field_ -= field_.mean()
    field_ /= max(np.abs(field_).max(), 1e-12)
    if gradient:
        yy, xx = np.indices((ny, nx), dtype=float)
        angle = rng.uniform(0, 2 * math.pi)
        ramp = xx * math.cos(angle) + yy * math.sin(angle)
        ramp -= ramp.mean()
        ramp /= max(np.abs(ramp).max(), 1e-12)
        field_ = 0.5 * field_ + 0.5 * ramp
        field_ /= max(np.abs(field_).max(), 1e-12)
    return field_


def _blob_layout(rng, ny: int, nx: int, n: int, edge_width: float):
    """Soft-edged irregular ellipses that overlap in places, leaving some vacuum.

    Layouts are drawn until the cores (coverage > 0.5) give 4-35 % overlap, 8-45 % vacuum and
    every crystal alone on ≥ min(3, 15 / n) % of the probes (or the best of 200 draws on tiny
    scans).  The draws are judged on a grid of at most 32 × 32 points, so that large scans cost
    no more.
    """
    width = edge_width / (2 * math.log(9))  # logistic scale for a 10-90 % width of edge_width
    coarse = np.meshgrid(
        np.linspace(0, ny - 1, min(ny, 32)), np.linspace(0, nx - 1, min(nx, 32)), indexing="ij"
    )
    # Blob areas add up to about the scan area.
    typical = math.sqrt(1.0 * ny * nx / (n * math.pi))
    best = None
    for attempt in range(200):
        blobs = [_draw_blob(rng, ny, nx, typical) for _ in range(n)]
        penalty = _blob_penalty(_render_blobs(blobs, *coarse, width) > 0.5)
        if best is None or penalty < best[0]:
            best = (penalty, blobs)
        if penalty == 0:
            break
    _logger.debug("blob layout after %d draws, penalty %.3g", attempt + 1, best[0])
    coverage = _render_blobs(best[1], *np.indices((ny, nx), dtype=float), width)
    return coverage, {"blobs": best[1], "draws": attempt + 1, "penalty": best[0]}


def _draw_blob(rng, ny: int, nx: int, typical: float) -> dict:
    """Centre, semi-axes, angle and boundary ripples of one irregular ellipse (probe units)."""
    a, b = typical * rng.uniform(1.0, 1.35), typical * rng.uniform(0.65, 1.0)
    return {
        "centre_yx": list(rng.uniform(0.1, 0.9, size=2) * (ny, nx) - 0.5),
        "semi_axes": [a, b],
        "angle_deg": rng.uniform(0, 180),
        "ripple_amplitudes": list(rng.uniform(-0.07, 0.07, size=3)),  # cos(m theta), m = 2-4
        "ripple_phases": list(rng.uniform(0, 2 * math.pi, size=3)),
    }


def _render_blobs(blobs, yy: np.ndarray, xx: np.ndarray, width: float) -> np.ndarray:
    """Coverage (..., n) in [0, 1] of each blob: a logistic of the distance to its edge."""
    coverage = np.empty(yy.shape + (len(blobs),))
    for j, blob in enumerate(blobs):
        (cy, cx), (a, b) = blob["centre_yx"], blob["semi_axes"]
        angle = math.radians(blob["angle_deg"])
        u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
        v = (yy - cy) * math.cos(angle) - (xx - cx) * math.sin(angle)
        rho, theta = np.hypot(u / a, v / b), np.arctan2(v / b, u / a)
        edge = 1 + sum(
            amp * np.cos(m * theta + phi)
            for m, amp, phi in zip((2, 3, 4), blob["ripple_amplitudes"], blob["ripple_phases"])
        )
        distance = (rho - edge) * math.sqrt(a * b)  # ≈ probes outside the edge
        coverage[..., j] = special.expit(-distance / width)
    # Exactly zero far outside, so vacuum probes hold the background alone.
    return np.clip((coverage - _EDGE_CUT) / (1 - _EDGE_CUT), 0, 1)


def _blob_penalty(core: np.ndarray) -> float:
    count = core.sum(axis=-1)
    n = core.shape[-1]
    vacuum = float(np.mean(count == 0))
    penalty = max(0.0, 0.08 - vacuum) + max(0.0, vacuum - 0.45)
    if n == 1:
        return penalty
    overlap = float(np.mean(count >= 2))
    penalty += max(0.0, 0.04 - overlap) + max(0.0, overlap - 0.35)
    alone = np.mean(core & (count == 1)[..., np.newaxis], axis=(0, 1))
    return penalty + float(np.sum(np.maximum(0.0, min(0.03, 0.15 / n) - alone)))


def _grain_layout(rng, ny: int, nx: int, n: int):
    """A Voronoi tessellation into ``n`` grains (hard boundaries: one crystal per probe)."""
    yy, xx = np.indices((ny, nx), dtype=float)
    best = None
    for attempt in range(50):
        seeds = _spread_points(rng, ny, nx, n)
        d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
        owner = np.argmin(d2, axis=-1)
        smallest = int(np.bincount(owner.ravel(), minlength=n).min())
        if best is None or smallest > best[0]:
            best = (smallest, owner, seeds)
        if smallest >= max(1, 0.3 * ny * nx / n):
            break
    owner = best[1]
    coverage = (owner[..., None] == np.arange(n)).astype(float)
    return coverage, {"seeds_yx": best[2], "smallest_grain": best[0]}


def _spread_points(rng, ny: int, nx: int, n: int) -> np.ndarray:
    """``n`` random points over the scan, kept apart by dart throwing."""
    radius = 0.7 * math.sqrt(ny * nx / n)
    points: list[np.ndarray] = []
    failures = 0
    while len(points) < n:
        p = rng.uniform(0, 1, size=2) * (ny, nx) - 0.5
        if all(np.hypot(*(p - q)) >= radius for q in points):
            points.append(p)
        else:
            failures += 1
            if failures % 30 == 0:
                radius *= 0.9
    return np.array(points)


def _thickness_ramp(rng, coverage: np.ndarray, ratio: float):
    """A linear thickness ramp (×``ratio``) across the crystal's region, mean 1."""
    ny, nx = coverage.shape
    yy, xx = np.indices((ny, nx), dtype=float)
    angle = rng.uniform(0, 2 * math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    inside = coverage > 0.5
    lo, hi = (along[inside].min(), along[inside].max()) if inside.any() else (0.0, 1.0)
    t = np.clip((along - lo) / max(hi - lo, 1e-12), 0, 1)
    ramp = (1 + (ratio - 1) * t) * 2 / (1 + ratio)
    return ramp, {"crystal": 1, "ratio": ratio, "direction_deg": math.degrees(angle)}
