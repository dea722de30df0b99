"""Figures of a simulation's ground truth: the true sources with their weights, and the true
phase labels (which crystals are present at each probe).

Examples
--------
>>> import matplotlib.pyplot as plt
>>> from hyperspy_nmfdecide.data import simulated_scan
>>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=0)
>>> x_axis, y_axis = scan.signal.axes_manager.navigation_axes
>>> fig = plot_true_labels(scan.labels, scan.label_sets, scan.source_names, x_axis, y_axis)
>>> fig.axes[0].get_title(), fig.axes[0].get_xlabel()
('true phase labels', 'x (nm)')
>>> plt.close(fig)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ._axes import get_axes, show_image
from .components import plot_components

__all__ = ["plot_true_labels", "plot_true_sources"]


def plot_true_sources(
    sources: np.ndarray,
    weights: np.ndarray,
    source_names: Sequence[str],
    *,
    pattern_axes: Sequence,
    scan_axes: Sequence,
    true_k: int,
    fig=None,
):
    """The true source patterns above the counts each contributes at every probe.

    The ideal factors and loadings, drawn as :func:`plot_components` draws a fit.

    Parameters
    ----------
    sources : numpy.ndarray
        (n_sources, n_ky, n_kx) the noise-free source patterns.
    weights : numpy.ndarray
        (n_y, n_x, n_sources) the counts of each source at each probe.
    source_names : sequence of str
        One name per source: the titles of the columns.
    pattern_axes, scan_axes : sequence of hyperspy.axes.DataAxis
        The calibrated (kx, ky) axes of a pattern and (x, y) axes of the scan, in HyperSpy's
        order (``axes_manager.signal_axes``, ``axes_manager.navigation_axes``).
    true_k : int
        The true number of components, for the title.
    fig : matplotlib.figure.Figure, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=0)
    >>> am = scan.signal.axes_manager
    >>> fig = plot_true_sources(scan.sources, scan.weights, scan.source_names,
    ...                         pattern_axes=am.signal_axes, scan_axes=am.navigation_axes,
    ...                         true_k=scan.true_k)
    >>> fig.axes[0].get_title()
    'background'
    >>> plt.close(fig)
    """
    import hyperspy.api as hs

    sources = np.asarray(sources, dtype=float)
    n = sources.shape[0]
    component = {"name": "source", "size": n, "navigate": True}

    def signal_axes(axes) -> list[dict]:  # array order: rows (y) first
        return [dict(a.get_axis_dictionary(), navigate=False) for a in axes[::-1]]

    patterns = hs.signals.Signal2D(sources, axes=[component] + signal_axes(pattern_axes))
    maps = hs.signals.Signal2D(
        np.moveaxis(np.asarray(weights, dtype=float), -1, 0),
        axes=[component] + signal_axes(scan_axes),
    )
    return plot_components(
        patterns,
        maps,
        title=f"Ground truth: {n} sources, true k = {true_k}",
        labels=list(source_names),
        fig=fig,
    )


def plot_true_labels(
    labels: np.ndarray,
    label_sets: Mapping[int, Sequence[int]],
    source_names: Sequence[str],
    x_axis=None,
    y_axis=None,
    *,
    ax=None,
):
    """Map of the true phase labels, its colour bar naming the crystals present.

    Parameters
    ----------
    labels : numpy.ndarray
        (n_y, n_x) int label of every probe; 0 where no crystal is present.
    label_sets : mapping of int to sequence of int
        Label → indices into ``source_names`` of the sources present (0 is not a key).
    source_names : sequence of str
        The sources' names; ``"crystal i"`` is shortened to ``"ci"`` on the colour bar.
    x_axis, y_axis : hyperspy.axes.DataAxis or dict, optional
        The calibrated scan axes; pixel indices when None.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure
        One image in qualitative colours (one per label present) with its colour bar, whose
        tick labels are the crystals present (``"c1+c2"``, ``"none"``).
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    labels = np.asarray(labels)
    values = np.unique(labels)
    short = {i: name.replace("crystal ", "c") for i, name in enumerate(source_names)}
    tick_names = [
        "+".join(short[m] for m in label_sets[v]) if v in label_sets else "none"
        for v in values.tolist()
    ]
    if x_axis is None or y_axis is None:
        x_axis = {"size": labels.shape[1]}
        y_axis = {"size": labels.shape[0]}
    fig, ax = get_axes(ax, figsize=(4.8, 4.0))
    colours = ListedColormap([plt.get_cmap("tab10")(i % 10) for i in range(len(values))])
    im = show_image(
        ax,
        np.searchsorted(values, labels),
        x_axis,
        y_axis,
        cmap=colours,
        vmin=-0.5,
        vmax=len(values) - 0.5,
    )
    cbar = fig.colorbar(im, ax=ax, ticks=np.arange(len(values)), label="crystals present")
    cbar.ax.set_yticklabels(tick_names)
    ax.set_title("true phase labels")
    return fig
