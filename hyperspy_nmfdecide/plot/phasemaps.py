"""The phase-map figure: label map with its legend, the loading maps' colour composite, and
the mean raw pattern of every phase beside the mean of the NMF model (Cao et al.).

Examples
--------
>>> import matplotlib.pyplot as plt
>>> from hyperspy_nmfdecide.data import simulated_scan
>>> s = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, dose=5000,
...                    random_state=0).signal
>>> _ = s.nmf_sweep(range(2, 3), n_restarts=2, random_state=0, show_progressbar=False)
>>> pm = s.phase_maps(2, show_progressbar=False)
>>> fig = plot_phase_maps(pm)
>>> len(fig.axes) == 2 + 2 * pm.n_phases
True
>>> plt.close(fig)
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from ._axes import OVERLAP_HATCH, get_figure, show_image

__all__ = ["label_colours", "plot_phase_maps"]


class _PhaseMaps(Protocol):
    """What :func:`plot_phase_maps` reads of phase maps (``PhaseMaps`` has it)."""

    k: int
    n_phases: int
    legend: dict[int, tuple[int, ...]]
    background_index: int | None
    label_array: np.ndarray
    overlap_array: np.ndarray
    rgb: np.ndarray
    raw_mean_array: np.ndarray
    reconstructed_mean_array: np.ndarray
    signal_mask: np.ndarray | None
    comparison: list[dict]
    axes: list[dict]
    arrays: object  # its ``colours``: (k, 3) colour of every component


def label_colours(pm: _PhaseMaps) -> np.ndarray:
    """Colour of every phase label: black for 0, the component's colour for a single
    component, the mean of the members' colours for an overlap.

    Parameters
    ----------
    pm : PhaseMaps
        The result of ``phase_maps``.

    Returns
    -------
    numpy.ndarray
        (n_phases + 1, 3) RGB colours, row i for label i.
    """
    colours = np.zeros((pm.n_phases + 1, 3))
    for label, members in pm.legend.items():
        colours[label] = np.mean(pm.arrays.colours[list(members)], axis=0)
    return colours


def plot_phase_maps(
    pm: _PhaseMaps,
    fig=None,
    *,
    max_phases: int | None = None,
    component_names: list[str] | None = None,
):
    """Label map with a legend, RGB composite, and raw / reconstructed mean pattern pairs.

    Parameters
    ----------
    pm : PhaseMaps
        The result of ``phase_maps`` (or ``compute_phase_maps``).
    fig : matplotlib.figure.Figure, optional
        Where to draw (its existing axes are kept); a new figure when None.
    max_phases : int or None
        Show the pattern pairs of the first this many phases (all when None).
    component_names : list of str, optional
        A name per component for the legend (e.g. ``ComponentIndex.component_names``:
        phase and zone axis); default ``C0``, ``C1``, ...

    Returns
    -------
    matplotlib.figure.Figure
        Its axes, in order: the label map (overlaps hatched; legend "label: components"),
        the RGB composite, then per phase shown the raw mean and the reconstructed mean
        (``2 + 2 * n_shown`` axes).  Patterns are drawn on a
        shared symmetric-log scale per pair; the comparison figures are in the titles.
    """
    n_shown = pm.n_phases if max_phases is None else max(0, min(int(max_phases), pm.n_phases))
    n_rows = 1 + math.ceil(n_shown / 2)
    fig = get_figure(fig, figsize=(9.0, 3.6 + 2.3 * (n_rows - 1)))
    grid = fig.add_gridspec(n_rows, 4, height_ratios=[1.6] + [1.0] * (n_rows - 1))
    # The result keeps its axes in array order: the scan's rows (y) first.
    y_axis, x_axis = [a for a in pm.axes if a["navigate"]]

    names = component_names or [f"C{j}" for j in range(pm.k)]
    _draw_labels(fig.add_subplot(grid[0, :2]), pm, x_axis, y_axis, names)
    ax = fig.add_subplot(grid[0, 2:])
    show_image(ax, pm.rgb, x_axis, y_axis, ylabel=False)
    ax.set_title("Components (RGB composite)")
    _draw_pattern_pairs(fig, grid, pm, n_shown)
    return fig


def _draw_labels(ax, pm: _PhaseMaps, x_axis: dict, y_axis: dict, names: list[str]) -> None:
    """The label map, overlaps hatched, with a legend entry per phase and one for label 0."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colours = label_colours(pm)
    extent = show_image(
        ax,
        pm.label_array,
        x_axis,
        y_axis,
        cmap=ListedColormap(colours),
        vmin=-0.5,
        vmax=pm.n_phases + 0.5,
    ).get_extent()
    if pm.overlap_array.any():
        ax.contourf(
            pm.overlap_array.astype(float),
            levels=[0.5, 1.5],
            colors="none",
            hatches=[OVERLAP_HATCH],
            origin="upper",
            extent=extent,
        )
    handles = [
        Patch(
            facecolor=colours[label],
            hatch=OVERLAP_HATCH if len(members) > 1 else None,
            label=f"{label}: {' + '.join(names[j] for j in members)}"
            + (" (overlap)" if len(members) > 1 else ""),
        )
        for label, members in pm.legend.items()
    ]
    handles.append(Patch(facecolor=colours[0], label="0: no phase"))
    ax.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"Phase labels (k={pm.k}, background: {pm.background_index})")


def _draw_pattern_pairs(fig, grid, pm: _PhaseMaps, n_shown: int) -> None:
    """Mean raw and mean reconstructed pattern of the first ``n_shown`` phases, two pairs a
    row below the maps, each pair on one symmetric-log scale."""
    from matplotlib.colors import SymLogNorm

    raw, rec = pm.raw_mean_array, pm.reconstructed_mean_array
    if pm.signal_mask is not None:  # masked pixels are not fitted: show them as the model does
        raw = np.where(np.asarray(pm.signal_mask).reshape(raw.shape[1:]), 0.0, raw)
    for i in range(n_shown):
        label = i + 1
        row = pm.comparison[i]
        vmax = float(max(raw[i].max(initial=0), rec[i].max(initial=0), 1e-12))
        norm = SymLogNorm(linthresh=max(vmax * 1e-3, 1e-12), vmin=0, vmax=vmax)
        r, c = 1 + i // 2, 2 * (i % 2)
        for j, (image, name) in enumerate(((raw[i], "raw"), (rec[i], "NMF"))):
            ax = fig.add_subplot(grid[r, c + j])
            ax.imshow(image, cmap="inferno", norm=norm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            members = "+".join(str(m) for m in pm.legend[label])
            if j == 0:
                ax.set_title(f"phase {label} ({members}) {name}", fontsize="small")
            else:
                ax.set_title(
                    f"{name}: SSIM {row['ssim']:.3f}, {row['psnr']:.1f} dB", fontsize="small"
                )
