"""The components figure: diffraction-pattern factors above their loading maps.

Examples
--------
>>> import matplotlib.pyplot as plt
>>> from hyperspy_nmfdecide.data import simulated_scan
>>> s = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, random_state=0).signal
>>> sweep = s.nmf_sweep(range(2, 3), n_restarts=2, random_state=0, show_progressbar=False)
>>> fig = plot_components(sweep.get_factors(2), sweep.get_loadings(2))
>>> len(fig.axes)  # two patterns, two maps, two colour bars
6
>>> plt.close(fig)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._axes import get_figure, show_image
from ._intensity import log_norm, pattern_cmap

__all__ = ["SCALINGS", "plot_components"]

#: Intensity scales of the patterns in :func:`plot_components`.
SCALINGS = ("log", "sqrt", "linear")


def plot_components(
    factors,
    loadings,
    *,
    scaling: str = "log",
    max_columns: int = 4,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    dynamic_range: float = 1e3,
    fig=None,
):
    """Diffraction-pattern factors above their loading maps, one column per component.

    Parameters
    ----------
    factors : hyperspy.signal.BaseSignal
        (k | n_ky, n_kx): one pattern per navigation index, calibrated signal axes.
    loadings : hyperspy.signal.BaseSignal
        (k | n_x, n_y): one map per navigation index, calibrated scan axes.
    scaling : {"log", "sqrt", "linear"}
        Intensity scale of the patterns; "log" spans ``dynamic_range`` below each maximum.
    max_columns : int
        Components per row; more components wrap into further pairs of rows.
    title : str, optional
        Figure title.
    labels : sequence of str, optional
        One title per component; default "#i (share of the total intensity)".
    dynamic_range : float
        Ratio of the brightest to the faintest intensity shown with ``scaling="log"``.
    fig : matplotlib.figure.Figure, optional
        Where to draw; a new figure (sized to the number of components) when None.

    Returns
    -------
    matplotlib.figure.Figure
        Per component, its pattern (titled with its label) above its map, in rows of
        ``max_columns`` components; unused axes of the last row are switched off.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be 'log', 'sqrt' or 'linear', got {scaling!r}")
    patterns = np.asarray(factors.data, dtype=float)
    maps = np.asarray(loadings.data, dtype=float)
    if patterns.ndim == 2:
        patterns, maps = patterns[np.newaxis], maps[np.newaxis]
    k = patterns.shape[0]
    if maps.shape[0] != k:
        raise ValueError(f"{k} factors but {maps.shape[0]} loading maps")
    if labels is None:
        labels = _share_labels(maps)
    ncols = max(1, min(k, max_columns))
    nblocks = math.ceil(k / ncols)
    figsize = (2.9 * ncols + 0.4, 2.45 * 2 * nblocks + (0.4 if title else 0.0))
    fig = get_figure(fig, figsize=figsize)
    axes = fig.subplots(2 * nblocks, ncols, squeeze=False)
    kx, ky = factors.axes_manager.signal_axes
    sx, sy = loadings.axes_manager.signal_axes
    for i in range(nblocks * ncols):
        block, col = divmod(i, ncols)
        top, bottom = axes[2 * block, col], axes[2 * block + 1, col]
        if i >= k:
            top.set_axis_off()
            bottom.set_axis_off()
            continue
        show_image(
            top,
            patterns[i],
            kx,
            ky,
            ylabel=col == 0,
            fontsize=8,
            norm=_pattern_norm(patterns[i], scaling, dynamic_range),
            cmap=pattern_cmap("inferno"),
        )
        top.set_title(labels[i], fontsize=10)
        im = show_image(
            bottom, maps[i], sx, sy, ylabel=col == 0, fontsize=8, cmap="viridis", vmin=0
        )
        cbar = fig.colorbar(im, ax=bottom, shrink=0.8, pad=0.02)
        cbar.ax.tick_params(labelsize=7)
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    return fig


def _share_labels(maps: np.ndarray) -> list[str]:
    """``"#i (share)"``: each component's share of the summed loadings, numbered from 1."""
    k = maps.shape[0]
    totals = maps.reshape(k, -1).sum(axis=1)
    share = totals / totals.sum() if totals.sum() > 0 else np.zeros(k)
    return [f"#{i + 1} ({s:.0%})" for i, s in enumerate(share)]


def _pattern_norm(pattern: np.ndarray, scaling: str, dynamic_range: float):
    """The colour scale of one pattern: log over ``dynamic_range``, square root or linear."""
    from matplotlib.colors import Normalize, PowerNorm

    if scaling == "log":
        return log_norm(pattern, dynamic_range)
    vmax = float(np.nanmax(pattern)) or 1.0
    return PowerNorm(0.5, 0, vmax) if scaling == "sqrt" else Normalize(0, vmax)
