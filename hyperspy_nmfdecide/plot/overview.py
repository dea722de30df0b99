"""The data-overview figure: mean diffraction pattern with the virtual detectors drawn on it,
and the virtual bright-field and annular dark-field images they give.

Examples
--------
>>> import hyperspy.api as hs
>>> import matplotlib.pyplot as plt
>>> from hyperspy_nmfdecide.data import simulated_scan
>>> s = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=0).signal
>>> rois = [hs.roi.CircleROI(0.0, 0.0, 0.1), hs.roi.CircleROI(0.0, 0.0, 0.5, r_inner=0.2)]
>>> mean = s.mean(axis=s.axes_manager.navigation_axes)
>>> fig = plot_data_overview(mean, s.get_virtual_image(rois), rois)
>>> [ax.get_title() for ax in fig.axes[:3]]
['mean diffraction pattern (log)', 'virtual bright field', 'virtual annular dark field']
>>> plt.close(fig)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._axes import axis_values, get_figure, show_image
from ._intensity import log_norm, pattern_cmap

__all__ = ["plot_data_overview"]

#: Ratio of the brightest to the faintest intensity shown of the mean pattern.
DYNAMIC_RANGE = 1e4


def plot_data_overview(mean, virtual, rois: Sequence, signal_mask=None, *, fig=None):
    """Mean pattern (log intensity) with the virtual detectors, and the two virtual images.

    Parameters
    ----------
    mean : hyperspy.signal.BaseSignal
        The mean diffraction pattern, with calibrated signal axes.
    virtual : hyperspy.signal.BaseSignal
        The virtual bright-field and annular dark-field images (two navigation indices,
        calibrated scan axes), as ``get_virtual_image(rois)`` returns them.
    rois : sequence of hyperspy.roi.CircleROI
        The bright-field disc and the annular dark-field ring (``r_inner`` set), in the
        calibrated units of the pattern.
    signal_mask : numpy.ndarray, optional
        Boolean over the pattern, True = excluded from the fit: its outline is drawn in lime.
    fig : matplotlib.figure.Figure, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        Three image axes (mean pattern, bright field, dark field), each with its colour bar.
        On the first: the bright-field disc (cyan), the two circles of the ring (white,
        dashed) and the outline of ``signal_mask``.
    """
    fig = get_figure(fig, figsize=(12.0, 3.7))
    axes = fig.subplots(1, 3)
    _draw_mean_pattern(fig, axes[0], mean, rois, signal_mask)
    x_axis, y_axis = virtual.axes_manager.signal_axes
    for ax, image, title in zip(
        axes[1:], virtual.data, ("virtual bright field", "virtual annular dark field")
    ):
        im = show_image(ax, np.asarray(image, dtype=float), x_axis, y_axis, cmap="gray")
        fig.colorbar(im, ax=ax, label="counts", shrink=0.85)
        ax.set_title(title)
    return fig


def _draw_mean_pattern(fig, ax, mean, rois: Sequence, signal_mask) -> None:
    from matplotlib.patches import Circle

    kx, ky = mean.axes_manager.signal_axes
    data = np.asarray(mean.data, dtype=float)
    im = show_image(
        ax, data, kx, ky, norm=log_norm(data, DYNAMIC_RANGE), cmap=pattern_cmap("inferno")
    )
    fig.colorbar(im, ax=ax, label="mean counts per pixel", shrink=0.85)
    bf, adf = rois
    ax.add_patch(Circle((bf.cx, bf.cy), bf.r, fill=False, color="cyan", lw=1.2))
    for r in (adf.r_inner, adf.r):
        ax.add_patch(Circle((adf.cx, adf.cy), r, fill=False, color="white", lw=1.0, ls="--"))
    if signal_mask is not None and np.any(signal_mask):
        mask = np.asarray(signal_mask, float)
        ax.contour(axis_values(kx), axis_values(ky), mask, levels=[0.5], colors="lime")
    ax.set_title("mean diffraction pattern (log)")
