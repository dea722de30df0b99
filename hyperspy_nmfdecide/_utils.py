"""Small helpers that several layers share: array kinds, progress bars, JSON, argument checks.

Nothing here knows about NMF; anything that does belongs to a module of its own.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "is_dask",
    "json_default",
    "optional_array",
    "positive_number",
    "require_2d_patterns",
    "resolve_progressbar",
    "to_jsonable",
]


def is_dask(array: Any) -> bool:
    """Whether ``array`` is a dask collection (checked by module, so dask need not be imported).

    Examples
    --------
    >>> is_dask(np.zeros(3))
    False
    """
    return type(array).__module__.split(".")[0] == "dask"


def resolve_progressbar(show_progressbar: bool | None) -> bool:
    """``show_progressbar`` as given, or HyperSpy's preference when it is None.

    Examples
    --------
    >>> resolve_progressbar(False)
    False
    """
    if show_progressbar is None:
        from hyperspy.defaults_parser import preferences

        return bool(preferences.General.show_progressbar)
    return bool(show_progressbar)


def optional_array(value) -> np.ndarray | None:
    """None stays None; anything else becomes a numpy array.

    Examples
    --------
    >>> optional_array(None) is None, optional_array([1, 2]).shape
    (True, (2,))
    """
    return None if value is None else np.asarray(value)


def json_default(value):
    """The ``default=`` hook of ``json.dumps`` for numpy values and HyperSpy trees.

    Non-finite floats are kept (``json`` writes ``NaN``), so a result written and read back is
    the same result.

    Examples
    --------
    >>> import json
    >>> json.dumps({"a": np.float32(0.5), "b": np.arange(2)}, default=json_default)
    '{"a": 0.5, "b": [0, 1]}'
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "as_dictionary"):
        return value.as_dictionary()
    return str(value)


def to_jsonable(value, *, summarise_above: int | None = None):
    """``value`` with numpy scalars and arrays, paths and non-finite floats made strict JSON.

    NaN and infinities become None (strict JSON has no NaN). With ``summarise_above``, arrays
    of more elements than that are described (shape and dtype) instead of written out.

    Examples
    --------
    >>> to_jsonable({"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), 4: (1, 2)})
    {'a': 0.5, 'b': [0, 1, 2], 'c': None, '4': [1, 2]}
    >>> to_jsonable(np.zeros((5, 5)), summarise_above=16)
    'array of shape (5, 5), dtype float64'
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, summarise_above=summarise_above) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, summarise_above=summarise_above) for v in value]
    if isinstance(value, np.ndarray):
        if summarise_above is not None and value.size > summarise_above:
            return f"array of shape {value.shape}, dtype {value.dtype}"
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "as_dictionary"):
        return to_jsonable(value.as_dictionary(), summarise_above=summarise_above)
    return str(value)


def positive_number(value, name: str, *, allow_none: bool = False) -> float | None:
    """``value`` as a float if it is a finite real number > 0; else an error naming ``name``.

    Raises TypeError for what is not a number (a bool is not), ValueError for a number that is
    not finite and positive. None passes through when ``allow_none``.

    Examples
    --------
    >>> positive_number(2, "radius")
    2.0
    >>> positive_number(-1, "radius")
    Traceback (most recent call last):
    ...
    ValueError: radius must be a finite number > 0, got -1
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def require_2d_patterns(signal, method: str) -> None:
    """A ValueError naming ``method`` unless ``signal`` holds 2-D patterns.

    Examples
    --------
    >>> import hyperspy.api as hs
    >>> require_2d_patterns(hs.signals.Signal1D(np.zeros((2, 8))), "nmf_sweep")
    Traceback (most recent call last):
    ...
    ValueError: nmf_sweep needs 2-D patterns; this signal has signal dimension 1
    """
    if signal.axes_manager.signal_dimension != 2:
        raise ValueError(
            f"{method} needs 2-D patterns; this signal has signal dimension "
            f"{signal.axes_manager.signal_dimension}"
        )
