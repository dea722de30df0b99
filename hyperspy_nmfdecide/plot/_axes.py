"""Calibrated axes for every figure: image extents, aspect, the calibrated image itself.

Axes are read through :mod:`hyperspy_nmfdecide.axes` (HyperSpy axes and axis dicts alike);
the names it defines are handed on here for the figures.  Also where a figure gets its Figure
and Axes when the caller passes none.

Examples
--------
>>> x = {"name": "x", "units": "nm", "size": 4, "scale": 2.0, "offset": 0.0}
>>> y = {"name": "y", "units": "nm", "size": 3, "scale": 2.0, "offset": 0.0}
>>> axis_label(x), image_extent(x, y), image_aspect(x, y)
('x (nm)', [-1.0, 7.0, 5.0, -1.0], 'equal')
"""

from __future__ import annotations

from ..axes import axis_label, axis_values, field, pixel_to_value, plain_units, text

__all__ = [
    "OVERLAP_HATCH",
    "axis_label",
    "axis_values",
    "get_axes",
    "get_figure",
    "image_aspect",
    "image_extent",
    "pixel_to_value",
    "plain_units",
    "show_image",
]

#: Hatching of the probes where components or crystals overlap: their blended colours are
#: close to their members'.
OVERLAP_HATCH = "////"


def image_extent(x_axis, y_axis) -> list[float]:
    """``imshow`` extent (origin upper) of an image over two axes, outer pixel edges included.

    Parameters
    ----------
    x_axis, y_axis : hyperspy.axes.DataAxis or dict
        The axis of the image's columns and of its rows.

    Returns
    -------
    list of float
        ``[left, right, bottom, top]``: the first row at the top.

    Examples
    --------
    >>> image_extent({"size": 2, "scale": 1.0}, {"size": 2, "scale": 10.0, "offset": 5.0})
    [-0.5, 1.5, 20.0, 0.0]
    """
    x0, x1 = _edges(x_axis)
    y0, y1 = _edges(y_axis)
    return [float(x0), float(x1), float(y1), float(y0)]


def _edges(axis) -> tuple[float, float]:
    values = axis_values(axis)
    if len(values) > 1:
        step = (values[-1] - values[0]) / (len(values) - 1)
    else:  # one pixel: its width is the axis scale, when there is one
        step = float(field(axis, "scale") or 1.0)
    return values[0] - step / 2, values[-1] + step / 2


def image_aspect(x_axis, y_axis) -> str:
    """``"equal"`` when both axes have the same units (a true-shape image), else ``"auto"``.

    Examples
    --------
    >>> image_aspect({"units": "nm"}, {"units": "nm"}), image_aspect({"units": "nm"}, {})
    ('equal', 'auto')
    """
    same = text(field(x_axis, "units")) == text(field(y_axis, "units"))
    return "equal" if same else "auto"


def show_image(
    ax,
    image,
    x_axis,
    y_axis,
    *,
    xlabel: bool = True,
    ylabel: bool = True,
    fontsize: float | str | None = None,
    **imshow_kwargs,
):
    """``ax.imshow`` of an image on its calibrated axes: extent, aspect and labelled axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    image : array_like
        (rows, columns) or (rows, columns, 3) image, rows along ``y_axis``.
    x_axis, y_axis : hyperspy.axes.DataAxis or dict
        The axes of the columns and the rows.
    xlabel, ylabel : bool
        Label that axis with its name and units.
    fontsize : float or str, optional
        Font size of the labels (matplotlib's default when None).
    **imshow_kwargs
        Passed to ``imshow`` (``interpolation`` defaults to ``"nearest"``: pixels stay pixels).

    Returns
    -------
    matplotlib.image.AxesImage

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> fig, ax = plt.subplots()
    >>> x = {"name": "x", "units": "nm", "size": 4, "scale": 2.0}
    >>> im = show_image(ax, np.zeros((3, 4)), x, dict(x, name="y", size=3))
    >>> list(im.get_extent()), ax.get_xlabel()
    ([-1.0, 7.0, 5.0, -1.0], 'x (nm)')
    >>> plt.close(fig)
    """
    imshow_kwargs.setdefault("interpolation", "nearest")
    imshow_kwargs.setdefault("aspect", image_aspect(x_axis, y_axis))
    image_artist = ax.imshow(image, extent=image_extent(x_axis, y_axis), **imshow_kwargs)
    size = {} if fontsize is None else {"fontsize": fontsize}
    if xlabel:
        ax.set_xlabel(axis_label(x_axis), **size)
    if ylabel:
        ax.set_ylabel(axis_label(y_axis), **size)
    return image_artist


def get_axes(ax=None, figsize: tuple[float, float] = (6.0, 4.0)):
    """``(figure, ax)``: the Figure of ``ax``, or a new constrained-layout figure and its axes.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig, ax = get_axes()
    >>> fig is ax.figure, fig.get_size_inches().tolist()
    (True, [6.0, 4.0])
    >>> plt.close(fig)
    """
    if ax is None:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def get_figure(fig=None, figsize: tuple[float, float] = (6.0, 4.0)):
    """``fig``, or a new constrained-layout figure of ``figsize`` inches.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> fig = get_figure(figsize=(3.0, 2.0))
    >>> fig.get_size_inches().tolist()
    [3.0, 2.0]
    >>> plt.close(fig)
    """
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize, layout="constrained")
    return fig
