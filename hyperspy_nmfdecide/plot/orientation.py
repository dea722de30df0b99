"""The orientation figure: which crystal is where (phase and zone axis), and its IPF colour.

Left, every probe coloured by its strongest crystal (the component colours of the phase
maps), overlap probes hatched, a legend entry per crystal naming its phase and zone axis;
right, the inverse-pole-figure colour of that crystal's orientation along ``direction``.
"""

from __future__ import annotations

import numpy as np

from .. import crystal_maps
from ._axes import OVERLAP_HATCH, get_figure, show_image

__all__ = ["plot_orientation_maps"]


def plot_orientation_maps(index, phase_maps, fig=None, *, direction=(0.0, 0.0, 1.0)):
    """Crystal map with a legend of phases and zone axes, beside the IPF-coloured map.

    Parameters
    ----------
    index : ComponentIndex
        From ``s.index_components``.
    phase_maps : PhaseMaps
        Phase maps at the same k of the same data.
    fig : matplotlib.figure.Figure, optional
        Where to draw; a new figure when None.
    direction : (float, float, float)
        The sample direction of the IPF colours (z: the beam).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the crystal map (legend "C1 Fe [011]", overlaps hatched) and the IPF map.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    stack = index.crystal_stack(phase_maps)
    first = stack[0]
    y_axis, x_axis = phase_maps.nav_axes
    fig = get_figure(fig, figsize=(10.0, 4.0))
    ax_map, ax_ipf = fig.subplots(1, 2)

    colours = np.vstack([np.zeros((1, 3)), np.asarray(phase_maps.arrays.colours)[:, :3]])
    image = show_image(
        ax_map,
        first + 1,
        x_axis,
        y_axis,
        cmap=ListedColormap(colours),
        vmin=-0.5,
        vmax=index.k + 0.5,
    )
    several = (stack >= 0).sum(axis=0) > 1
    if several.any():
        ax_map.contourf(
            several.astype(float),
            levels=[0.5, 1.5],
            colors="none",
            hatches=[OVERLAP_HATCH],
            origin="upper",
            extent=image.get_extent(),
        )
    names = index.component_names
    shown = sorted({int(c) for c in np.unique(first) if c >= 0})
    handles = [Patch(facecolor=colours[c + 1], label=names[c]) for c in shown]
    if several.any():
        handles.append(Patch(facecolor="white", hatch=OVERLAP_HATCH, label="more than one crystal"))
    handles.append(Patch(facecolor="black", label="no crystal"))
    ax_map.legend(handles=handles, fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax_map.set_title(f"Strongest crystal per probe (k={index.k})")

    ipf = crystal_maps.ipf_colours(index.orientations, direction)
    rgb = np.where((first >= 0)[..., None], ipf[np.clip(first, 0, None)], 0.0)
    show_image(ax_ipf, rgb, x_axis, y_axis, ylabel=False)
    ax_ipf.set_title(f"IPF colour along {list(direction)}")
    return fig
