"""Virtual detectors of a 4D-STEM scan, found on its mean diffraction pattern.

:func:`find_virtual_detectors` places a bright-field disc on the direct beam and an annular
dark-field ring around it, in detector pixels; :func:`calibrate_detectors` gives the same
geometry in the units of the signal axes, as HyperSpy's ROIs take it.

Examples
--------
>>> yy, xx = np.indices((32, 32))
>>> pattern = 1.0 + 100.0 * ((yy - 16) ** 2 + (xx - 16) ** 2 <= 9)
>>> axis = {"size": 32, "scale": 0.5, "offset": -8.0}
>>> calibrate_detectors(find_virtual_detectors(pattern), axis, axis)["centre"]
(0.0, 0.0)
"""

from __future__ import annotations

import math

import numpy as np

from .axes import axis_values, pixel_to_value

__all__ = ["calibrate_detectors", "find_virtual_detectors"]


def find_virtual_detectors(mean_pattern: np.ndarray, signal_mask=None) -> dict:
    """Direct-beam centre and radii for virtual bright-field and annular dark-field images.

    The centre and radius come from the signal mask when one is given (its centroid and
    equivalent radius), else from the mean pattern: the maximum after a Gaussian blur, and the
    radius where the azimuthal mean falls to 10 % of the way from the median to the peak.
    The annulus runs from 1.5 × the beam radius + 1 pixel to the nearest detector edge.

    Parameters
    ----------
    mean_pattern : numpy.ndarray
        (n_ky, n_kx) mean diffraction pattern.
    signal_mask : numpy.ndarray, optional
        Boolean, True = excluded (typically a direct-beam disc).

    Returns
    -------
    dict
        ``centre`` (row, column) and ``bf_radius``, ``adf_inner``, ``adf_outer``, in pixels.

    Examples
    --------
    >>> yy, xx = np.indices((32, 32))
    >>> pattern = 1.0 + 100.0 * ((yy - 14) ** 2 + (xx - 17) ** 2 <= 9)
    >>> d = find_virtual_detectors(pattern)
    >>> d["centre"], round(d["bf_radius"], 1)
    ((14.0, 17.0), 3.0)
    """
    from scipy import ndimage

    pattern = np.nan_to_num(np.asarray(mean_pattern, dtype=float))
    shape = pattern.shape
    if signal_mask is not None and np.any(signal_mask):
        mask = np.asarray(signal_mask, dtype=bool)
        cy, cx = ndimage.center_of_mass(mask)
        radius = math.sqrt(mask.sum() / math.pi)
    else:
        blurred = ndimage.gaussian_filter(pattern, sigma=max(1.0, min(shape) / 64))
        cy, cx = (float(i) for i in np.unravel_index(np.argmax(blurred), shape))
        yy, xx = np.indices(shape)
        r = np.hypot(yy - cy, xx - cx).round().astype(int)
        profile = np.bincount(r.ravel(), pattern.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
        floor = float(np.median(pattern))
        level = floor + 0.1 * (profile[0] - floor)
        below = np.flatnonzero(profile < level)
        radius = float(below[0] - 1) if below.size else 2.0
        radius = max(radius, 1.0)
    edge = min(cy, cx, shape[0] - 1 - cy, shape[1] - 1 - cx)
    inner = 1.5 * radius + 1
    outer = max(edge, inner + 1)
    return {
        "centre": (float(cy), float(cx)),
        "bf_radius": float(radius),
        "adf_inner": float(inner),
        "adf_outer": float(outer),
    }


def calibrate_detectors(detectors: dict, x_axis, y_axis) -> dict:
    """The detectors of :func:`find_virtual_detectors` in the calibrated units of the pattern.

    Parameters
    ----------
    detectors : dict
        ``centre`` (row, column), ``bf_radius``, ``adf_inner``, ``adf_outer`` in pixels.
    x_axis, y_axis : hyperspy.axes.DataAxis or dict
        The pattern's column (kx) and row (ky) axes.  Radii are scaled by the mean pixel step
        of ``x_axis`` (1 for a single pixel).

    Returns
    -------
    dict
        ``centre`` as (kx, ky) and the three radii, in the axes' units.

    Examples
    --------
    >>> axis = {"size": 5, "scale": 0.5, "offset": -1.0}
    >>> d = {"centre": (2.0, 2.0), "bf_radius": 1.0, "adf_inner": 2.5, "adf_outer": 2.0}
    >>> calibrate_detectors(d, axis, axis)
    {'centre': (0.0, 0.0), 'bf_radius': 0.5, 'adf_inner': 1.25, 'adf_outer': 1.0}
    """
    values = axis_values(x_axis)
    scale = abs(float(np.mean(np.diff(values)))) if values.size > 1 else 1.0
    row, column = detectors["centre"]
    return {
        "centre": (pixel_to_value(x_axis, column), pixel_to_value(y_axis, row)),
        **{name: detectors[name] * scale for name in ("bf_radius", "adf_inner", "adf_outer")},
    }
