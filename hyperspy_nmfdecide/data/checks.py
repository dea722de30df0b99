"""Checks of single arguments of :func:`~hyperspy_nmfdecide.data.simulated_scan`.

Each returns the value normalised (a Python int or float, a tuple, a numpy dtype) or raises a
ValueError naming the argument.  How the arguments are checked together is in
:mod:`.arguments`.
"""

from __future__ import annotations

import numpy as np

from .crystals import _CRYSTAL_DATA, CRYSTALS

__all__ = [
    "_check_beam_offset",
    "_check_crystals",
    "_check_dtype",
    "_check_fraction",
    "_check_int",
    "_check_nav_shape",
    "_check_non_negative",
    "_check_positive",
]


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _check_positive(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def _check_non_negative(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number ≥ 0, got {value!r}") from None
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a number ≥ 0, got {value!r}")
    return value


def _check_fraction(value, name: str, below_one: bool = False) -> float:
    """A strength in [0, 1] (or [0, 1) with ``below_one``); True is 1 and False is 0."""
    interval = "[0, 1)" if below_one else "[0, 1]"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}") from None
    if not (0 <= number < 1 if below_one else 0 <= number <= 1):
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return number


def _check_nav_shape(nav_shape) -> tuple[int, int]:
    try:
        ny, nx = nav_shape
    except (TypeError, ValueError):
        raise ValueError(f"nav_shape must be (ny, nx), got {nav_shape!r}") from None
    return _check_int(ny, "nav_shape", 1), _check_int(nx, "nav_shape", 1)


def _check_beam_offset(beam_offset, size: int, sigma: float) -> tuple[tuple[float, float], float]:
    """(x, y) beam offset, and the pixels the beam may still move keeping 3 sigma inside."""
    try:
        offset = tuple(float(v) for v in beam_offset)
    except TypeError:
        raise ValueError(f"beam_offset must be two numbers (x, y), got {beam_offset!r}") from None
    margin = size / 2 - 3 * sigma
    if len(offset) != 2 or not all(np.isfinite(offset)) or max(map(abs, offset)) > margin:
        raise ValueError(
            f"beam_offset must be two numbers (x, y) within ±{margin:g} pixels of the detector "
            f"centre (pattern_size {size}, spot_sigma {sigma:g}), got {beam_offset!r}"
        )
    return offset, margin - max(map(abs, offset))


def _check_dtype(dtype) -> np.dtype:
    try:
        out_dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be a float or integer dtype, got {dtype!r}") from None
    if out_dtype.kind not in "fiu":
        raise ValueError(f"dtype must be a float or integer dtype, got {out_dtype}")
    return out_dtype


def _check_crystals(crystals) -> list[str]:
    names = [crystals] if isinstance(crystals, str) else list(crystals)
    unknown = [c for c in names if c not in _CRYSTAL_DATA]
    if not names or unknown:
        raise ValueError(f"crystals must be names from {CRYSTALS}, got {crystals!r}")
    return names
