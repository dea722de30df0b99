"""Calibrated axes for every figure: image extents, axis labels with units, aspect, pixel → value.

One reader for both kinds of axis the package meets: HyperSpy axes (``DataAxis`` and its
subclasses, with ``axis``, ``name``, ``units``) and the axis dicts that results keep
(``get_axis_dictionary()`` output: ``size``, ``scale``, ``offset``, ``name``, ``units``, or
``axis`` for a non-uniform axis).  Also where a figure gets its Figure and Axes when the caller
passes none.

Examples
--------
>>> x = {"name": "x", "units": "nm", "size": 4, "scale": 2.0, "offset": 0.0}
>>> y = {"name": "y", "units": "nm", "size": 3, "scale": 2.0, "offset": 0.0}
>>> axis_label(x), image_extent(x, y), image_aspect(x, y)
('x (nm)', [-1.0, 7.0, 5.0, -1.0], 'equal')
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

__all__ = [
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

# What HyperSpy writes for a name or units nobody set.
_UNDEFINED = "<undefined>"


def _field(axis, name: str):
    """``name`` of a HyperSpy axis or an axis dict; None when absent."""
    return axis.get(name) if isinstance(axis, Mapping) else getattr(axis, name, None)


def _text(value) -> str:
    """A name or units as text, "" when unset (None, HyperSpy's Undefined or "<undefined>")."""
    if not isinstance(value, str) or value == _UNDEFINED:
        return ""
    return value


def axis_values(axis) -> np.ndarray:
    """The calibrated value of every pixel centre of ``axis``.

    Parameters
    ----------
    axis : hyperspy.axes.DataAxis or dict
        A HyperSpy axis, or an axis dict (``size``, ``scale``, ``offset``; or ``axis``).

    Returns
    -------
    numpy.ndarray
        (size,) float values.

    Examples
    --------
    >>> axis_values({"size": 3, "scale": 0.5, "offset": 1.0}).tolist()
    [1.0, 1.5, 2.0]
    """
    if not isinstance(axis, Mapping):
        return np.asarray(axis.axis, dtype=float)
    if axis.get("axis") is not None:  # a non-uniform axis lists its values
        return np.asarray(axis["axis"], dtype=float)
    scale, offset = float(axis.get("scale", 1.0)), float(axis.get("offset", 0.0))
    return offset + scale * np.arange(int(axis["size"]))


def axis_label(axis) -> str:
    """``"name (units)"`` of an axis; the name alone without units, ``"pixels"`` without either.

    Parameters
    ----------
    axis : hyperspy.axes.DataAxis or dict

    Returns
    -------
    str

    Examples
    --------
    >>> axis_label({"name": "kx", "units": "$\\\\AA^{-1}$"})
    'kx ($\\\\AA^{-1}$)'
    >>> axis_label({"name": "<undefined>", "units": "<undefined>"})
    'pixels'
    """
    name, units = _text(_field(axis, "name")), _text(_field(axis, "units"))
    if units:
        return f"{name} ({units})".strip()
    return name or "pixels"


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
        step = float(_field(axis, "scale") or 1.0)
    return values[0] - step / 2, values[-1] + step / 2


def image_aspect(x_axis, y_axis) -> str:
    """``"equal"`` when both axes have the same units (a true-shape image), else ``"auto"``.

    Examples
    --------
    >>> image_aspect({"units": "nm"}, {"units": "nm"}), image_aspect({"units": "nm"}, {})
    ('equal', 'auto')
    """
    same = _text(_field(x_axis, "units")) == _text(_field(y_axis, "units"))
    return "equal" if same else "auto"


def pixel_to_value(axis, index: float) -> float:
    """The calibrated value at a (fractional) pixel index, held at the ends outside the axis.

    Examples
    --------
    >>> pixel_to_value({"size": 5, "scale": 0.5, "offset": -1.0}, 2.5)
    0.25
    """
    values = axis_values(axis)
    return float(np.interp(index, np.arange(len(values)), values))


def plain_units(units) -> str:
    """Units as plain Unicode text (for HTML and JSON), from HyperSpy's mathtext strings.

    Examples
    --------
    >>> plain_units(r"$\\AA^{-1}$"), plain_units("nm^{-1}"), plain_units("1/nm")
    ('Å⁻¹', 'nm⁻¹', '1/nm')
    """
    text = str(units).replace("$", "").replace("\\AA", "Å").replace("\\mathrm", "")
    superscripts = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
    text = re.sub(r"\^\{([-0-9]+)\}", lambda m: m.group(1).translate(superscripts), text)
    text = re.sub(r"\^([-]?[0-9])", lambda m: m.group(1).translate(superscripts), text)
    return text.replace("{", "").replace("}", "").replace("\\", "").strip()


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
