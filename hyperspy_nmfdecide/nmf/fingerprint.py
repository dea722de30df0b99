"""What identifies the data of a sweep, whatever order its probes and pixels are in.

``‖X‖²``, the sum and the size of X do not change when probes or pixels are reordered (a
transposed scan, rotated patterns, two swapped probes).  The fingerprint adds ``Uᵀ X V`` for
seeded Gaussian vectors on both axes (:func:`~.chunks.projection_vectors`), computed by every
operator in the pass over X that gathers its statistics.  A checkpoint stores it (manifest and
stage files), the sweep's result carries it, and stored results can be checked against the data
they are read with (:func:`content_fingerprint`, :func:`same_fingerprint`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .chunks import PROJECTIONS

__all__ = ["KEYS", "Fingerprint", "content_fingerprint", "fingerprint_of", "same_fingerprint"]

#: Relative tolerance of ``‖X‖²`` and the sum, and absolute tolerance of the projections
#: (divided by ``‖X‖``, so O(1)): float64 sums of float32 values in another chunking or order
#: differ by ~1e-15 relative; a swap of two of n probes moves a projection by ~1/sqrt(n).
TOLERANCE = 1e-9

_SIZES = ("n_probe", "n_pixel", "n_kept_probes", "n_kept_pixels")
#: The keys of a fingerprint, in order.
KEYS = [*_SIZES, "squared_norm", "total", *(f"projection_{i}" for i in range(PROJECTIONS**2))]


class Fingerprint(dict):
    """A fingerprint: a dict of floats that numpy sees as the float64 array of its values.

    ``np.asarray`` of a plain dict is an object array, which ``np.savez`` pickles (and a safe
    ``np.load`` refuses) and zspy cannot write; code that stores every field of
    ``SweepArrays`` as an array (the results layer's ``to_dict``) thus stores this one as
    numbers.  Read it back with :meth:`from_array`.

    Examples
    --------
    >>> fingerprint = Fingerprint({"squared_norm": 2.0, "total": 1.0})
    >>> stored = np.asarray(fingerprint)
    >>> stored.tolist(), Fingerprint.from_array(stored, list(fingerprint)) == fingerprint
    ([2.0, 1.0], True)
    """

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.array([float(value) for value in self.values()], dtype=dtype or np.float64)

    @classmethod
    def from_array(cls, values: Any, keys: list[str] | None = None) -> Fingerprint:
        """The fingerprint whose values (``np.asarray`` of one) are ``values``.

        ``keys`` default to those of :func:`fingerprint_of`, in its order.
        """
        values = np.asarray(values, dtype=np.float64).ravel()
        keys = list(keys) if keys is not None else KEYS
        if values.size != len(keys):
            raise ValueError(f"a fingerprint has {len(keys)} values, got {values.size}")
        return cls(zip(keys, map(float, values)))


def fingerprint_of(operator: Any) -> Fingerprint:
    """The fingerprint of a data operator's X, in the data's own units.

    Parameters
    ----------
    operator
        A :class:`~.chunks.DataOperator` (its ``stats``, ``full_shape`` and, when it normalises,
        ``scale``).

    Returns
    -------
    Fingerprint
        A dict of str to float (keys :data:`KEYS`): sizes (full and kept),
        ``squared_norm``, ``total`` and ``projection_0`` … ``_8`` (``Uᵀ X V / ‖X‖``).

    Examples
    --------
    >>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
    >>> fingerprint_of(DenseOperator(np.ones((3, 2))))["squared_norm"]
    6.0
    """
    stats, scale = operator.stats, float(getattr(operator, "scale", 1.0))
    norm = float(np.sqrt(stats.squared_norm)) or 1.0
    out = Fingerprint(
        zip(
            _SIZES,
            map(float, (*operator.full_shape, stats.n_rows, stats.n_loss_cols)),
        )
    )
    out["squared_norm"] = float(stats.squared_norm) * scale * scale
    out["total"] = float(stats.total) * scale
    for i, value in enumerate(stats.projection):
        out[f"projection_{i}"] = float(value) / norm  # the scale cancels
    return out


def content_fingerprint(
    data: Any,
    *,
    row_mask: np.ndarray | None = None,
    col_mask: np.ndarray | None = None,
    negative_values: str = "raise",
) -> Fingerprint:
    """The fingerprint :func:`~.sweep.run_sweep` records in ``SweepArrays.fingerprint``.

    Parameters
    ----------
    data
        A data operator (its fingerprint is read, no pass over X), or a 2-D numpy, dask or
        scipy sparse array (n_probe, n_pixel): one pass over it.
    row_mask, col_mask, negative_values
        As given to :func:`~.sweep.run_sweep` (ignored for an operator).

    Returns
    -------
    Fingerprint
        A dict of str to float; compare two with :func:`same_fingerprint`.

    Examples
    --------
    >>> x = np.arange(12.0).reshape(4, 3)
    >>> same_fingerprint(content_fingerprint(x), content_fingerprint(x[::-1]))
    False
    """
    if hasattr(data, "stats") and hasattr(data, "full_shape"):
        return fingerprint_of(data)
    from .dispatch import make_operator

    operator = make_operator(
        data,
        row_mask=row_mask,
        col_mask=col_mask,
        negative_values=negative_values,
        normalise=True,
    )
    return fingerprint_of(operator)


def same_fingerprint(a: dict | None, b: dict | None) -> bool:
    """Whether two fingerprints are of the same data (up to float64 summation order).

    Examples
    --------
    >>> a = {"n_probe": 2.0, "squared_norm": 1.0, "projection_0": 0.5}
    >>> same_fingerprint(a, a | {"squared_norm": 1.0 + 1e-12})
    True
    >>> same_fingerprint(a, a | {"projection_0": 0.4})
    False
    """
    if not isinstance(a, dict) or not isinstance(b, dict) or a.keys() != b.keys():
        return False
    try:
        for key in a:
            x, y = float(a[key]), float(b[key])
            if key.startswith("projection_"):
                same = abs(x - y) <= TOLERANCE
            else:
                same = bool(np.isclose(x, y, rtol=TOLERANCE, atol=0))
            if not same:
                return False
    except (TypeError, ValueError):
        return False
    return True
