"""Calibrated axes, read alike from HyperSpy axes and from the axis dicts results keep.

HyperSpy axes (``DataAxis`` and its subclasses, with ``axis``, ``name``, ``units``) and the
axis dicts of results (``get_axis_dictionary()`` output: ``size``, ``scale``, ``offset``,
``name``, ``units``, or ``axis`` for a non-uniform axis): calibrated values, pixel → value,
labels with units, units as plain text.  The figures (:mod:`hyperspy_nmfdecide.plot`), the
report and the virtual detectors read axes through these.

Examples
--------
>>> x = {"name": "x", "units": "nm", "size": 4, "scale": 2.0, "offset": 0.0}
>>> axis_label(x), axis_values(x).tolist(), pixel_to_value(x, 1.5)
('x (nm)', [0.0, 2.0, 4.0, 6.0], 3.0)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

__all__ = ["axis_label", "axis_values", "field", "pixel_to_value", "plain_units", "text"]

# What HyperSpy writes for a name or units nobody set.
_UNDEFINED = "<undefined>"


def field(axis, name: str):
    """``name`` of a HyperSpy axis or an axis dict; None when absent."""
    return axis.get(name) if isinstance(axis, Mapping) else getattr(axis, name, None)


def text(value) -> str:
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
    name, units = text(field(axis, "name")), text(field(axis, "units"))
    if units:
        return f"{name} ({units})".strip()
    return name or "pixels"


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
