"""The data matrix X (n_probe × n_pixel) as chunk operators: dense, sparse, low-rank.

Each operator here is a :class:`~.chunks.ChunkOperator` whose chunks are visited in this process
(:class:`~.chunks.InProcessChunks`); :class:`~.cluster.ClusterOperator` extends the lazy dense
one to a dask cluster, and :func:`~.dispatch.make_operator` picks the operator for an array.

Masks follow HyperSpy's convention: ``True`` marks an entry that is *excluded*.  Masked and
all-dark pixels are dropped from X (not zeroed) and restored as zeros by the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._utils import is_dask
from .chunks import DTYPE, InProcessChunks, MatrixStats, projection_vectors
from .sparse import csr_times_dense

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DenseOperator",
    "DenseProducts",
    "LowRankOperator",
    "SparseOperator",
]

#: Target size in bytes of one navigation chunk of X when the caller does not choose.
DEFAULT_CHUNK_BYTES = 32 * 2**20

#: Rms of X inside which a normalising operator leaves X as given (scale 1, so seeded sweeps
#: of ordinary data keep their results bit for bit: the reference scans' rms are 4.5 and 11.8).
#: Outside it X is divided by the power of two nearest its rms, exact in floating point: the
#: solvers' absolute float32-eps guards then weigh as at rms 1 (at ×1e-12 MU fitted the
#: all-zero model), and float32 products cannot overflow (×1e17 gave MSE 0).
RMS_WINDOW = (2.0**-4, 2.0**16)

_F32_MAX = float(np.finfo(DTYPE).max)


def _check_values(minimum: float, has_nan: bool, has_inf: bool, negative: str) -> None:
    if has_nan:
        raise ValueError("The data contain NaN values; NMF needs finite, non-negative data.")
    if has_inf:
        raise ValueError("The data contain infinite values; NMF needs finite, non-negative data.")
    if minimum < 0 and negative == "raise":
        raise ValueError(
            f"The data contain negative values (minimum {minimum:g}); NMF needs non-negative "
            "data. Pass negative_values='clip' to set them to zero, or subtract a background "
            "that does not overshoot."
        )


def _too_large(peak: float) -> ValueError:
    return ValueError(
        f"The data hold finite values up to {peak:g}, beyond float32's range "
        f"({_F32_MAX:.3g}) in which this computation works: divide the data by a constant "
        "(e.g. 1e30) first."
    )


def _float32(values: Any, copy: bool = True) -> np.ndarray:
    """``values`` as float32; finite values beyond its range become inf (checked after)."""
    with np.errstate(over="ignore"):
        return values.astype(DTYPE, copy=copy)


def _times(block: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``block @ v`` in float64; silent on inf (such data are refused after the pass)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return np.asarray(block, dtype=np.float64) @ v


def _wide_peak(source: Any) -> float | None:
    """Largest |value| of a float dtype wider than float32 when every value is finite, else None.

    Called only when the float32 copy holds an infinity: it tells values that are infinite
    from finite ones too large for float32.
    """
    if not (np.issubdtype(source.dtype, np.floating) and source.dtype.itemsize > 4):
        return None
    if not bool(np.isfinite(source).all()):
        return None
    return float(max(abs(float(source.max())), abs(float(source.min()))))


#: Below this largest |value| a wide float source is scaled before its float32 conversion:
#: float32 keeps full precision only above 2**-126.
_TINY = 2.0**-100


def _underflows(source: Any, converted: np.ndarray) -> bool:
    """Whether a wide float source lost precision in float32 (its largest |value| is tiny).

    Examples
    --------
    >>> x = np.array([1e-40, 3e-40])
    >>> _underflows(x, x.astype(np.float32)), _underflows(x * 1e30, (x * 1e30).astype(np.float32))
    (True, False)
    """
    if not (source.dtype.kind == "f" and source.dtype.itemsize > 4) or converted.size == 0:
        return False
    peak = max(float(converted.max()), -float(converted.min()))
    return not peak >= _TINY and bool((source != 0).any()) and not bool(np.isnan(peak))


def _window_exponent(squared_norm: float, n: int, p: int) -> int:
    """``e`` such that X / 2**e is fitted: 0 inside :data:`RMS_WINDOW`, else rms's nearest.

    Examples
    --------
    >>> _window_exponent(100.0, 2, 2), _window_exponent(4e-24, 2, 2)
    (0, -40)
    """
    rms = float(np.sqrt(squared_norm / (float(n) * float(p)))) if n and p else 0.0
    if rms == 0 or RMS_WINDOW[0] <= rms <= RMS_WINDOW[1]:
        return 0
    return int(np.round(np.log2(rms)))


def _scaled_stats(stats: MatrixStats, exponent: int) -> MatrixStats:
    """The statistics of X / 2**exponent (exact: powers of two)."""
    f = 2.0**-exponent
    return MatrixStats(
        stats.squared_norm * f * f,
        stats.n_rows,
        stats.n_cols,
        stats.n_loss_cols,
        stats.total * f,
        tuple(value * f for value in stats.projection),
    )


class DenseProducts:
    """The :class:`~.chunks.ChunkProducts` of a dense chunk ``X_c`` (n_c, p).

    Examples
    --------
    >>> chunk, h = np.ones((2, 3)), np.ones((1, 3))
    >>> DenseProducts().h_times_xt(chunk, h).tolist()
    [[3.0, 3.0]]
    """

    def h_times_xt(self, chunk: np.ndarray, h_stack: np.ndarray) -> np.ndarray:
        """``H X_cᵀ`` for one chunk: (T, n_c), the transpose of ``X_c Hᵀ``."""
        return h_stack @ chunk.T

    def wt_times_x(self, chunk: np.ndarray, wt_chunk: np.ndarray) -> np.ndarray:
        """``W_cᵀ X_c`` (T, p) of one chunk, given ``wt_chunk = W_cᵀ`` (T, n_c)."""
        return wt_chunk @ chunk

    def finish_wtx(self, wtx: np.ndarray) -> np.ndarray:
        """``Wᵀ X`` (T, p) from the sum of :meth:`wt_times_x` over chunks."""
        return wtx

    def dense(self, chunk: np.ndarray) -> np.ndarray:
        """The rows of X that a chunk stands for."""
        return chunk


def _row_slices(n: int, chunk_rows: int) -> list[slice]:
    return [slice(start, min(start + chunk_rows, n)) for start in range(0, n, chunk_rows)]


class DenseOperator(DenseProducts, InProcessChunks):
    """The data matrix, eager or lazy, with masks applied chunk by chunk.

    Parameters
    ----------
    data
        A 2-D numpy or dask array (n_probe, n_pixel) of non-negative values of any real dtype.
        It is never modified.
    row_mask, col_mask
        Boolean arrays, ``True`` = excluded probe / pixel.
    negative_values
        ``"raise"`` (default) or ``"clip"``: negative values set to zero.
    drop_dark
        Drop pixels that are zero in every kept pattern; exact, since they add nothing to the
        loss and their factor entries are zero at any optimum.
    chunk_rows
        Rows per chunk; by default about 32 MiB of float32 per chunk (eager) or the dask
        chunking along the navigation axis (lazy).
    normalise
        Fit X / ``scale`` (``scale`` a power of two, 1 while the rms of X is inside
        :data:`RMS_WINDOW`), so that solvers work at any physical scale; the caller multiplies
        loadings by ``scale`` and MSEs by ``scale**2``.  Finite values beyond float32's range
        are then accepted (else refused with a message that says so).  ``stats`` and the
        chunks are those of X / ``scale``.

    Examples
    --------
    >>> x = np.arange(12, dtype=np.uint16).reshape(4, 3)
    >>> op = DenseOperator(x, chunk_rows=2)
    >>> [c.shape for _, c in op.chunks()]
    [(2, 3), (2, 3)]
    >>> op.stats.squared_norm == float((x.astype(float) ** 2).sum())
    True
    """

    def __init__(
        self,
        data: Any,
        *,
        row_mask: np.ndarray | None = None,
        col_mask: np.ndarray | None = None,
        negative_values: str = "raise",
        drop_dark: bool = True,
        chunk_rows: int | None = None,
        normalise: bool = False,
    ) -> None:
        self.full_shape, self.row_keep, self.col_keep = _checked_layout(
            data, row_mask, col_mask, negative_values
        )
        self.clip = negative_values == "clip"
        self.lazy = is_dask(data)
        self._data = data
        self.normalise = bool(normalise)
        #: X is fitted divided by this power of two (see ``normalise``).
        self.scale = 1.0

        if self.lazy:
            self._prepare_lazy(negative_values, drop_dark, chunk_rows)
        else:
            self._prepare_eager(negative_values, drop_dark, chunk_rows)
        if self.stats.n_cols == 0:
            raise ValueError("Every pixel is masked or dark: there is nothing to factorise.")

    # -- preparation -------------------------------------------------------------------------
    def _prepare_eager(self, negative_values: str, drop_dark: bool, chunk_rows: int | None) -> None:
        x = np.asarray(self._data)
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise TypeError(f"data must be real numbers, got dtype {x.dtype}")
        rows = np.flatnonzero(self.row_keep)
        cols = np.flatnonzero(self.col_keep)
        n_loss_cols = cols.size
        full = rows.size == x.shape[0] and cols.size == x.shape[1]
        source = x if full else x[np.ix_(rows, cols)]
        # One float32 copy of the kept entries: the only full-size allocation of an eager fit.
        matrix = _float32(source, copy=source.dtype != DTYPE)
        floating = np.issubdtype(x.dtype, np.floating)
        exponent = 0
        if floating and bool(np.isinf(matrix).any()):
            matrix, exponent = self._beyond_float32(source, matrix)
        elif self.normalise and _underflows(source, matrix):
            exponent = int(np.frexp(_wide_peak(source) or 1.0)[1])
            matrix = (source * 2.0**-exponent).astype(DTYPE)
        minimum = float(matrix.min(initial=0.0)) * 2.0**exponent
        _check_values(
            minimum,
            floating and bool(np.isnan(matrix).any()),
            floating and bool(np.isinf(matrix).any()),
            negative_values,
        )
        if self.clip and minimum < 0:
            # Never clip in place when the matrix is still the caller's array.
            in_place = not np.shares_memory(matrix, x)
            matrix = np.maximum(matrix, 0, out=matrix if in_place else None)
        if drop_dark:
            bright = matrix.max(axis=0, initial=0.0) > 0
            if not bright.all():
                self.col_keep = self.col_keep.copy()
                self.col_keep[cols[~bright]] = False
                # compress, not matrix[:, bright]: numpy's column indexing writes a strided
                # result, 20× slower (10000 × 128²: 5.0 s against 0.26 s).
                matrix = np.compress(bright, matrix, axis=1)
        n, p = matrix.shape
        sq = float(np.einsum("ij,ij->", matrix, matrix, dtype=np.float64))
        extra = _window_exponent(sq, n, p) if self.normalise else 0
        if extra:
            factor = DTYPE(2.0**-extra)
            matrix = matrix * factor if np.shares_memory(matrix, x) else matrix.__imul__(factor)
            sq *= 4.0**-extra
        self.scale = 2.0 ** (exponent + extra)
        self._matrix = matrix
        self.chunk_rows = chunk_rows or max(1, DEFAULT_CHUNK_BYTES // (4 * max(p, 1)))
        self.row_slices = _row_slices(n, self.chunk_rows)
        total = float(matrix.sum(dtype=np.float64))
        self.stats = MatrixStats(sq, n, p, n_loss_cols, total, self._projection())

    def _beyond_float32(self, source: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, int]:
        """Finite values too large for float32: refused, or X scaled into range in float64."""
        peak = _wide_peak(source)
        if peak is None:
            return matrix, 0  # truly infinite (or NaN): _check_values says so
        if not self.normalise:
            raise _too_large(peak)
        exponent = int(np.frexp(peak)[1])
        return (source * 2.0**-exponent).astype(DTYPE), exponent

    def _projection(self) -> tuple[float, ...]:
        """``Uᵀ X V`` over the kept entries (:func:`~.chunks.projection_vectors`), one pass."""
        u, v = projection_vectors(*self.full_shape)
        u, v = u[self.row_keep], v[self.col_keep]
        total = np.zeros((u.shape[1], v.shape[1]))
        for rows, chunk in self.chunks():
            total += u[rows].T @ (np.asarray(chunk, dtype=np.float64) @ v)
        return tuple(float(value) for value in total.ravel())

    def _prepare_lazy(self, negative_values: str, drop_dark: bool, chunk_rows: int | None) -> None:
        x = self._data
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise TypeError(f"data must be real numbers, got dtype {x.dtype}")
        # Chunks hold whole patterns: never split the signal axis.
        x = x.rechunk({0: chunk_rows or x.chunks[0][0], 1: -1})
        self._data = x
        source = x[self.row_keep] if not self.row_keep.all() else x
        source = source[:, self.col_keep] if not self.col_keep.all() else source
        exponent = 0
        found = self._lazy_pass(source, exponent)
        wide = np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize > 4
        peak32 = max(float(np.max(found[3], initial=0.0)), -float(found[0]))
        if wide and (found[2] or (self.normalise and not peak32 >= _TINY)):
            import dask
            import dask.array as da

            finite, top, bottom = dask.compute(
                da.isfinite(source).all(), source.max(), source.min()
            )
            peak = max(abs(float(top)), abs(float(bottom)))
            if bool(finite) and peak > _F32_MAX and not self.normalise:
                raise _too_large(peak)
            if bool(finite) and peak > 0 and self.normalise:
                exponent = int(np.frexp(peak)[1])
                found = self._lazy_pass(source, exponent)
        minimum, has_nan, has_inf, colmax, sq, total, xv = found
        _check_values(float(minimum) * 2.0**exponent, bool(has_nan), bool(has_inf), negative_values)
        n_loss_cols = int(self.col_keep.sum())
        u = projection_vectors(*self.full_shape)[0][self.row_keep]
        projection = tuple(float(value) for value in (u.T @ xv).ravel())
        if drop_dark and not (colmax > 0).all():
            cols = np.flatnonzero(self.col_keep)
            self.col_keep = self.col_keep.copy()
            self.col_keep[cols[colmax <= 0]] = False
        self._row_offsets = np.concatenate([[0], np.cumsum(x.chunks[0])])
        kept_per_chunk = np.add.reduceat(self.row_keep, self._row_offsets[:-1])
        bounds = np.cumsum([0, *kept_per_chunk[kept_per_chunk > 0]])
        self.row_slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        n = int(self.row_keep.sum())
        p = int(self.col_keep.sum())
        self.chunk_rows = int(max(x.chunks[0]))
        stats = MatrixStats(float(sq), n, p, n_loss_cols, float(total), projection)
        extra = _window_exponent(stats.squared_norm, n, p) if self.normalise else 0
        self.stats = _scaled_stats(stats, extra)
        self.scale = 2.0 ** (exponent + extra)

    def _lazy_pass(self, source: Any, exponent: int) -> tuple:
        """One pass over the scan for every statistic a fit needs (X / 2**exponent)."""
        import dask
        import dask.array as da

        if exponent:
            kept = (source.astype(np.float64) * 2.0**-exponent).astype(DTYPE)
        else:
            kept = source.map_blocks(_float32, dtype=DTYPE)
        if self.clip:
            kept = da.maximum(kept, 0)
        v = projection_vectors(*self.full_shape)[1][self.col_keep]
        return dask.compute(
            kept.min(),
            da.isnan(kept).any(),
            da.isinf(kept).any(),
            kept.max(axis=0),
            (kept.astype(np.float64) ** 2).sum(),
            kept.sum(dtype=np.float64),
            kept.map_blocks(_times, v, chunks=(kept.chunks[0], (v.shape[1],)), dtype=np.float64),
        )

    # -- access ------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return self.stats.n_rows, self.stats.n_cols

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        """Yield ``(rows, X_c)``: a slice of kept rows and that float32 block of X."""
        if not self.lazy:
            for rows in self.row_slices:
                yield rows, self._matrix[rows]
            return
        # The next chunk is read (disk, decompression) while the caller computes on this one.
        with ThreadPoolExecutor(max_workers=1) as reader:
            blocks = self._lazy_blocks()
            pending = reader.submit(_computed, next(blocks))
            for rows in self.row_slices:
                chunk = pending.result()
                following = next(blocks, None)
                if following is not None:
                    pending = reader.submit(_computed, following)
                yield rows, chunk

    def _lazy_blocks(self) -> Iterator:
        """The kept rows and pixels of each dask chunk that keeps any, as float32 dask arrays."""
        cols = None if self.col_keep.all() else np.flatnonzero(self.col_keep)
        n_cols = int(self.col_keep.sum())
        for i in range(len(self._row_offsets) - 1):
            keep = self.row_keep[self._row_offsets[i] : self._row_offsets[i + 1]]
            if keep.any():
                rows = None if keep.all() else np.flatnonzero(keep)
                yield self._data.blocks[i].map_blocks(
                    _kept_entries,
                    rows=rows,
                    cols=cols,
                    clip=self.clip,
                    scale=self.scale,
                    dtype=DTYPE,
                    chunks=((int(keep.sum()),), (n_cols,)),
                )


def _computed(block: Any) -> np.ndarray:
    return np.asarray(block.compute())


def _kept_entries(
    block: np.ndarray,
    rows: np.ndarray | None,
    cols: np.ndarray | None,
    clip: bool,
    scale: float = 1.0,
) -> np.ndarray:
    """The kept rows and columns of one block / ``scale``, float32, in one gather.

    Two gathers cost twice.  A wide float block is scaled before its conversion to float32
    (its values may be beyond float32's range); any other after it (exact: a power of two).
    """
    if rows is not None and cols is not None:
        block = block[np.ix_(rows, cols)]
    elif rows is not None:
        block = block[rows]
    elif cols is not None:
        block = np.take(block, cols, axis=1)  # block[:, cols] is strided and ~10× slower
    wide = block.dtype.kind == "f" and block.dtype.itemsize > 4
    if scale != 1.0 and wide:
        block = block * (1.0 / scale)
    out = block.astype(DTYPE, copy=False)
    if scale != 1.0 and not wide:
        factor = DTYPE(1.0 / scale)
        out = out * factor if np.shares_memory(out, block) else out.__imul__(factor)
    if clip:
        out = np.maximum(out, 0, out=out if out is not block else None)
    return out


class SparseOperator(InProcessChunks):
    """A sparse data matrix (scipy CSR), e.g. patterns redrawn from registered spots (ePattern).

    Products cost ``O(nnz · T)`` instead of ``O(n p T)``, on every core (:mod:`.sparse`): the
    sweep's cost follows the number of spots, not of pixels.  Masks, value checks, dark-pixel
    removal and statistics mean the same as for :class:`DenseOperator`; with ``drop_dark``
    (the default) the pixels no stored entry touches are left out of X, so the factor updates
    run over the spots' pixels only (their factor entries, exactly zero at any optimum, are
    restored as zeros by the caller), while the MSE stays the mean over every unmasked pixel.

    Examples
    --------
    >>> from scipy import sparse
    >>> x = sparse.random(6, 40, density=0.1, format="csr", random_state=0, dtype=np.float32)
    >>> op = SparseOperator(x, chunk_rows=4)
    >>> [c.shape[0] for _, c in op.chunks()], op.shape[1] == int((x.getnnz(axis=0) > 0).sum())
    ([4, 2], True)
    """

    lazy = False

    def __init__(
        self,
        data: Any,
        *,
        row_mask: np.ndarray | None = None,
        col_mask: np.ndarray | None = None,
        negative_values: str = "raise",
        drop_dark: bool = True,
        chunk_rows: int | None = None,
        normalise: bool = False,
    ) -> None:
        from scipy import sparse

        self.full_shape, self.row_keep, self.col_keep = _checked_layout(
            data, row_mask, col_mask, negative_values
        )
        if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data.data):
            raise TypeError(f"data must be real numbers, got dtype {data.dtype}")
        self.normalise = bool(normalise)
        matrix = sparse.csr_matrix(data, copy=True)
        matrix = matrix[np.flatnonzero(self.row_keep)][:, np.flatnonzero(self.col_keep)]
        exponent = 0
        values = _float32(matrix.data)
        if np.issubdtype(matrix.dtype, np.floating) and bool(np.isinf(values).any()):
            peak = _wide_peak(matrix.data)
            if peak is not None and not self.normalise:
                raise _too_large(peak)
            if peak is not None:
                exponent = int(np.frexp(peak)[1])
                values = (matrix.data * 2.0**-exponent).astype(DTYPE)
        elif self.normalise and _underflows(matrix.data, values):
            exponent = int(np.frexp(_wide_peak(matrix.data) or 1.0)[1])
            values = (matrix.data * 2.0**-exponent).astype(DTYPE)
        matrix = sparse.csr_matrix((values, matrix.indices, matrix.indptr), shape=matrix.shape)
        values = matrix.data
        _check_values(
            float(values.min(initial=0.0)) * 2.0**exponent,
            bool(np.isnan(values).any()),
            bool(np.isinf(values).any()),
            negative_values,
        )
        np.maximum(values, 0, out=values)  # a private copy: clipping never reaches the caller
        matrix.eliminate_zeros()
        n_loss_cols = matrix.shape[1]
        if drop_dark:
            bright = matrix.getnnz(axis=0) > 0
            if not bright.all():
                cols = np.flatnonzero(self.col_keep)
                self.col_keep = self.col_keep.copy()
                self.col_keep[cols[~bright]] = False
                matrix = matrix[:, bright]
        if matrix.shape[1] == 0:
            raise ValueError("Every pixel is masked or dark: there is nothing to factorise.")
        matrix = matrix.tocsr()
        n, p = matrix.shape
        self.chunk_rows = chunk_rows or max(1, DEFAULT_CHUNK_BYTES // (8 * max(p, 1)))
        self.row_slices = _row_slices(n, self.chunk_rows)
        squared_norm = float(np.sum(matrix.data.astype(np.float64) ** 2))
        extra = _window_exponent(squared_norm, n, p) if self.normalise else 0
        if extra:
            matrix.data *= DTYPE(2.0**-extra)
        self.scale = 2.0 ** (exponent + extra)
        # Cut once (slicing a CSR matrix copies it, which cost every pass as much again), each
        # with the CSR form of its transpose for the threaded ``Wᵀ X`` (:mod:`.sparse`).
        self._chunks = [matrix[rows] for rows in self.row_slices]
        self._transposed = {id(chunk): chunk.tocsc().T for chunk in self._chunks}
        u, v = projection_vectors(*self.full_shape)
        xv = matrix @ v[self.col_keep]
        self.stats = MatrixStats(
            squared_norm * 4.0**-extra,
            n,
            p,
            n_loss_cols,
            float(matrix.data.sum(dtype=np.float64)),
            tuple(float(value) for value in (u[self.row_keep].T @ xv).ravel()),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.stats.n_rows, self.stats.n_cols

    def chunks(self) -> Iterator[tuple[slice, Any]]:
        yield from zip(self.row_slices, self._chunks)

    def h_times_xt(self, chunk: Any, h_stack: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(csr_times_dense(chunk, h_stack.T).T)

    def wt_times_x(self, chunk: Any, wt_chunk: np.ndarray) -> np.ndarray:
        transposed = self._transposed.get(id(chunk))
        transposed = chunk.tocsc().T if transposed is None else transposed
        return np.ascontiguousarray(csr_times_dense(transposed, wt_chunk.T).T)

    def finish_wtx(self, wtx: np.ndarray) -> np.ndarray:
        return wtx

    def dense(self, chunk: Any) -> np.ndarray:
        return chunk.toarray()


class LowRankOperator(InProcessChunks):
    """A rank-l surrogate ``X̃ = U G`` of the data (``G = S Vᵀ``), for ``mode="fast"``.

    Products cost ``O(n l T)`` instead of ``O(n p T)``: with l ≈ k_max + 25 ≪ p this is the
    randomised compression of Erichson et al. (2018) applied to both factor updates.
    ``stats`` are those of the *original* data (its ``squared_norm``): since ``X − X̃ ⟂ X̃``, the loss
    identity then gives ``‖X − X̃‖² + ‖X̃ − WH‖²``, which tracks the exact loss (it misses only
    ``2⟨X − X̃, WH⟩``), so ``tol`` means the same as in exact mode.

    Examples
    --------
    >>> x = np.outer(np.arange(1.0, 5.0), np.ones(3))
    >>> dense = DenseOperator(x)
    >>> u, s, vt = np.linalg.svd(x, full_matrices=False)
    >>> low = LowRankOperator(u[:, :1] * s[:1], vt[:1], dense.stats)
    >>> bool(np.allclose(low.dense(low.u), x, atol=1e-5))
    True
    """

    def __init__(self, u: np.ndarray, g: np.ndarray, stats: MatrixStats) -> None:
        if (u.shape[0], g.shape[1]) != (stats.n_rows, stats.n_cols):
            raise ValueError(f"a rank-l X̃ of shape {(u.shape[0], g.shape[1])} for data {stats}")
        self.u = np.ascontiguousarray(u, dtype=DTYPE)
        self.g = np.ascontiguousarray(g, dtype=DTYPE)
        self.stats = stats
        self.lazy = False
        self.row_slices = [slice(0, self.u.shape[0])]

    @property
    def shape(self) -> tuple[int, int]:
        return self.stats.n_rows, self.stats.n_cols

    def chunks(self) -> Iterator[tuple[slice, np.ndarray]]:
        yield slice(0, self.u.shape[0]), self.u

    def h_times_xt(self, chunk: np.ndarray, h_stack: np.ndarray) -> np.ndarray:
        return (h_stack @ self.g.T) @ chunk.T

    def wt_times_x(self, chunk: np.ndarray, wt_chunk: np.ndarray) -> np.ndarray:
        return wt_chunk @ chunk

    def finish_wtx(self, wtx: np.ndarray) -> np.ndarray:
        return wtx @ self.g

    def dense(self, chunk: np.ndarray) -> np.ndarray:
        return chunk @ self.g


def _checked_layout(
    data: Any, row_mask: np.ndarray | None, col_mask: np.ndarray | None, negative_values: str
) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """``(full_shape, row_keep, col_keep)`` of a 2-D data matrix, arguments checked."""
    if data.ndim != 2:
        raise ValueError(f"data must be 2-D (n_probe, n_pixel), got shape {data.shape}")
    if negative_values not in ("raise", "clip"):
        raise ValueError(f"negative_values must be 'raise' or 'clip', got {negative_values!r}")
    n_full, p_full = data.shape
    row_keep = _keep(row_mask, n_full, "navigation_mask")
    col_keep = _keep(col_mask, p_full, "signal_mask")
    return (n_full, p_full), row_keep, col_keep


def _keep(mask: np.ndarray | None, size: int, name: str) -> np.ndarray:
    """Invert a HyperSpy-style mask (True = excluded) into a keep vector, with checks."""
    if mask is None:
        return np.ones(size, dtype=bool)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"{name} must be a boolean array (True = excluded), got {mask.dtype}")
    if mask.size != size:
        raise ValueError(f"{name} has {mask.size} entries, expected {size}")
    keep = ~mask.ravel()
    if not keep.any():
        raise ValueError(f"{name} excludes every entry: nothing is left to factorise")
    return keep
