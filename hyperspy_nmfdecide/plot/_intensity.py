"""Intensity scales of diffraction-pattern images, shared by the figures that show patterns.

Examples
--------
>>> norm = log_norm(np.array([[0.0, 1.0], [10.0, 1000.0]]), dynamic_range=100)
>>> norm.vmin, norm.vmax
(10.0, 1000.0)
"""

from __future__ import annotations

import numpy as np

__all__ = ["log_norm", "pattern_cmap"]


def log_norm(data: np.ndarray, dynamic_range: float = 1e3):
    """Logarithmic colour scale over ``dynamic_range`` below the maximum of ``data``.

    The lower end is raised to the smallest positive value when that is higher, so a pattern
    of few counts is not drawn mostly black; values below it are clipped to the lowest colour.

    Parameters
    ----------
    data : numpy.ndarray
        The image (NaN and infinities are ignored).
    dynamic_range : float
        Ratio of the brightest to the faintest intensity shown.

    Returns
    -------
    matplotlib.colors.LogNorm
    """
    from matplotlib.colors import LogNorm

    finite = data[np.isfinite(data)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    positive = finite[finite > 0]
    vmin = vmax / dynamic_range
    if positive.size:
        vmin = max(vmin, float(positive.min()))
    return LogNorm(vmin=min(vmin, vmax * 0.999), vmax=vmax, clip=True)


def pattern_cmap(name: str = "inferno"):
    """Colormap ``name`` with invalid pixels (zeros on a log scale) in its lowest colour, so
    that they read as "no counts" rather than as holes.

    Parameters
    ----------
    name : str
        A matplotlib colormap.

    Returns
    -------
    matplotlib.colors.Colormap

    Examples
    --------
    >>> cmap = pattern_cmap("inferno")
    >>> cmap.get_bad().tolist() == list(cmap(0.0))
    True
    """
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return cmap.with_extremes(bad=cmap(0.0))
