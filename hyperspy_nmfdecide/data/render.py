"""Gaussian discs (spots, the direct beam) integrated over the pixels of the detector.

Pixel i spans i ± 0.5; a disc's share on the detector is exact (the normal CDF), so spots cut
by the detector edge keep the counts they really have on it.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = [
    "_on_detector",
    "_radius",
    "_render_discs",
    "_render_spots",
    "_spot_table",
]

_MIN_VISIBLE = 0.01  # true spots listed: ≥ 1 % of the disc on the detector


def _render_spots(xy: np.ndarray, intensity: np.ndarray, size: int, sigma: float):
    """Gaussian discs integrated over each pixel (pixel i spans i ± 0.5), (size, size)."""
    edges = np.arange(size + 1) - 0.5

    def profile(c):
        return np.diff(special.ndtr((edges[np.newaxis, :] - c[:, np.newaxis]) / sigma), axis=1)

    gx, gy = profile(xy[:, 0]), profile(xy[:, 1])
    return (gy * intensity[:, np.newaxis]).T @ gx


def _render_discs(
    xy: np.ndarray, amplitudes: np.ndarray, size: int, sigma: float, shifts=None
) -> np.ndarray:
    """(P, size, size) sums of Gaussian discs: ``amplitudes`` (P, n) at ``xy`` (n, 2).

    Each disc is integrated over the pixels (as :func:`_render_spots`); ``shifts`` (P, 2)
    moves every disc of probe p by ``shifts[p]`` (sub-pixel, exact).
    """
    edges = np.arange(size + 1) - 0.5
    if shifts is None:
        centres = xy[np.newaxis]  # (1, n, 2)
    else:
        centres = xy[np.newaxis] + shifts[:, np.newaxis]  # (P, n, 2)
    profile = np.diff(special.ndtr((edges - centres[..., np.newaxis]) / sigma), axis=-1)
    gx, gy = profile[..., 0, :], profile[..., 1, :]  # (1 or P, n, size)
    return (gy * amplitudes[..., np.newaxis]).transpose(0, 2, 1) @ gx


def _on_detector(xy: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Share of each Gaussian disc centred at ``xy`` (n, 2) that falls on the detector."""
    inside = special.ndtr((size - 0.5 - xy) / sigma) - special.ndtr((-0.5 - xy) / sigma)
    return inside[:, 0] * inside[:, 1]


def _spot_table(xy, intensity, size: int, sigma: float, total: float) -> np.ndarray:
    """(n, 3) x, y and share of ``total`` of the spots with ≥ 1 % of their disc on the detector."""
    on_detector = _on_detector(xy, size, sigma)
    keep = on_detector >= _MIN_VISIBLE
    return np.column_stack([xy[keep], intensity[keep] * on_detector[keep] / total])


def _radius(size: int, centre) -> np.ndarray:
    """(size, size) distance of every pixel centre from ``centre`` (x, y), pixels."""
    yy, xx = np.indices((size, size), dtype=float)
    return np.hypot(xx - centre[0], yy - centre[1])
