"""The counts of a scan: Poisson draws around the expected counts, row by row, eager or lazy.

Every scan row draws from its own seed, so eager and lazy scans are bit-identical and a lazy
scan is computed chunk by chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .detector import _detector_response
from .seeds import _STREAM_NOISE, _child

if TYPE_CHECKING:
    import dask.array

    from .physics import _Physics

__all__ = ["_Additive", "_count_data"]


@dataclass(frozen=True, eq=False)
class _Additive:
    """The additive model: the expected counts of a row are ``weights @ sources``."""

    weights: np.ndarray  # (ny, nx, n_sources)
    sources_flat: np.ndarray  # (n_sources, H × W)

    def expected(self, y: int) -> np.ndarray:
        """(nx, H × W) expected counts of the probes of scan row ``y``."""
        return np.maximum(self.weights[y] @ self.sources_flat, 0.0)


def _count_data(
    model: _Additive | _Physics,
    shape: tuple[int, int],
    seed_sequence: np.random.SeedSequence,
    dtype: np.dtype,
    detector: dict | None,
    lazy: bool,
    chunks: int | None,
) -> np.ndarray | dask.array.Array:
    """(ny, nx, H, W) counts drawn around ``model``, eager or lazy.

    Lazy: a dask array of one delayed task per chunk of ``chunks`` scan rows (None: about
    32 MiB a chunk), each drawing its rows as the eager array does.
    """
    ny, nx = model.weights.shape[:2]
    if not lazy:
        return _counts(model, range(ny), seed_sequence, dtype, shape, detector)
    # Imported here: eager scans do not need dask.
    import dask
    import dask.array as da

    if chunks is None:
        row_bytes = nx * shape[0] * shape[1] * dtype.itemsize
        chunks = max(1, min(ny, (32 * 2**20) // row_bytes))
    blocks = []
    for y0 in range(0, ny, chunks):
        rows = range(y0, min(ny, y0 + chunks))
        part = dask.delayed(_counts, pure=True)(model, rows, seed_sequence, dtype, shape, detector)
        blocks.append(da.from_delayed(part, (len(rows), nx) + shape, dtype=dtype))
    return da.concatenate(blocks, axis=0)


def _counts(
    model: _Additive | _Physics,
    rows: range,
    seed_sequence: np.random.SeedSequence,
    dtype: np.dtype,
    shape: tuple[int, int],
    detector: dict | None = None,
) -> np.ndarray:
    """Counts of scan rows ``rows`` (range); row y draws from its own seed.

    Poisson draws around ``model.expected(y)``, then the ``detector`` model (if any) with the
    same row generator.
    """
    out = np.empty((len(rows), model.weights.shape[1]) + shape, dtype=dtype)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    for i, y in enumerate(rows):
        rng = np.random.default_rng(_child(seed_sequence, _STREAM_NOISE, y))
        counts = rng.poisson(model.expected(y)).reshape((-1,) + shape)
        if detector is not None:
            counts = _detector_response(counts, rng, detector)
        if info is not None:
            counts = np.clip(counts, max(info.min, 0), min(info.max, np.iinfo(np.int64).max))
        out[i] = counts
    return out
