"""The chunk-operator contract: how every solver reaches the data matrix X (n_probe × n_pixel).

Every solver touches X only through an operator's :meth:`~ChunkOperator.map_reduce`: a
function applied to each navigation chunk ``X_c`` with that chunk's block of another matrix (the
loadings rows), returning a new block and a partial sum.  :class:`InProcessChunks` visits the
chunks one after another in this process (eager numpy, lazy dask streamed from disk, sparse,
compressed: :mod:`.operators`); on a dask cluster (:mod:`.cluster`) the same function runs where
each chunk lives.  So eager, lazy, out-of-core and distributed sweeps share one code path.

This module is the base of the operator modules: it imports none of them, so the arrows of
``operators`` → ``chunks`` and ``cluster`` → ``operators`` run one way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "DTYPE",
    "ChunkOperator",
    "ChunkProducts",
    "ChunkTask",
    "DataOperator",
    "FitOperator",
    "InProcessChunks",
    "MatrixStats",
    "PROJECTIONS",
    "add_partials",
    "projection_vectors",
    "run_chunk_tasks",
]

#: Working precision of every product with X (DESIGN §7: float32 GEMM is twice as fast).
DTYPE = np.float32


@dataclass(frozen=True)
class MatrixStats:
    """Statistics gathered in one pass over the data, before any fit.

    Attributes
    ----------
    squared_norm
        ``‖X‖²`` over kept entries, in float64.
    n_rows, n_cols
        Size of the kept matrix (after masks and dark-pixel removal).
    n_loss_cols
        Pixels the MSE is averaged over: those the user's mask keeps, dark ones included
        (their error is exactly zero), so that dropping dark pixels does not change the loss.
    total
        Sum of the kept entries, in float64 (NaN where no caller needs it).
    projection
        ``Uᵀ X V`` (flattened, float64) for the seeded vectors of :func:`projection_vectors`
        restricted to the kept rows and columns: what tells reordered data apart (a permutation
        of probes or pixels leaves ``‖X‖²`` and the sum as they were).  Empty where no caller
        needs it.

    Examples
    --------
    >>> stats = MatrixStats(squared_norm=14.0, n_rows=2, n_cols=2, n_loss_cols=3, total=6.0)
    >>> stats.mean, stats.n_elements
    (1.5, 6.0)
    """

    squared_norm: float
    n_rows: int
    n_cols: int
    n_loss_cols: int
    total: float = float("nan")
    projection: tuple[float, ...] = ()

    @property
    def mean(self) -> float:
        """Mean of the kept entries (the scale of random starts)."""
        return self.total / (float(self.n_rows) * float(self.n_cols))

    @property
    def n_elements(self) -> float:
        """Entries the MSE is the mean over."""
        return float(self.n_rows) * float(self.n_loss_cols)


#: Seed and number of the random vectors of :func:`projection_vectors` (on each axis).
_PROJECTION_SEED = 0x4E4D46
PROJECTIONS = 3


def projection_vectors(n_full: int, p_full: int) -> tuple[np.ndarray, np.ndarray]:
    """The seeded Gaussian vectors ``U`` (n_full, 3) and ``V`` (p_full, 3) of a fingerprint.

    Drawn over the *full* probe and pixel index (before masks), so a probe or pixel keeps its
    vector entry whatever else is masked; an operator takes the rows of its kept entries.  A
    swap of two probes i, j changes ``Uᵀ X V`` by ``(u_i − u_j)(x_j − x_i) V``, which is zero
    only when the two patterns are equal (when the swap changes nothing).

    Examples
    --------
    >>> u, v = projection_vectors(4, 3)
    >>> u.shape, v.shape, bool((projection_vectors(4, 3)[0] == u).all())
    ((4, 3), (3, 3), True)
    """
    rng = np.random.default_rng(_PROJECTION_SEED)
    u = rng.standard_normal((int(n_full), PROJECTIONS))
    v = np.random.default_rng(_PROJECTION_SEED + 1).standard_normal((int(p_full), PROJECTIONS))
    return u, v


#: A chunk task: ``task(products, X_c, block, **shared) -> (new_block, partial)``.
ChunkTask = Callable[..., tuple[Any, Any]]


@runtime_checkable
class ChunkProducts(Protocol):
    """The products with one chunk ``X_c`` (n_c, p) that a chunk task may ask for.

    A chunk task receives an object of this kind as its first argument: the operator itself in
    this process, its stand-in on a cluster worker.  ``X_c`` is whatever the operator's chunks
    are (a dense or sparse block, or the left factor of a low-rank surrogate).
    """

    def h_times_xt(self, chunk: Any, h_stack: np.ndarray) -> np.ndarray:
        """Return ``H X_cᵀ`` (T, n_c) for the stacked factors ``h_stack`` (T, p)."""
        ...

    def wt_times_x(self, chunk: Any, wt_chunk: np.ndarray) -> np.ndarray:
        """Return ``W_cᵀ X_c`` (T, p), or what :meth:`finish_wtx` turns into it once summed."""
        ...

    def finish_wtx(self, wtx: np.ndarray) -> np.ndarray:
        """Return ``Wᵀ X`` (T, p) from the sum over chunks of :meth:`wt_times_x`."""
        ...

    def dense(self, chunk: Any) -> np.ndarray:
        """Return the rows of X that ``chunk`` stands for, as a dense (n_c, p) array."""
        ...


@runtime_checkable
class ChunkOperator(Protocol):
    """X as a stream of navigation chunks: everything the SVD and the engine do to reach it.

    A *block* is a matrix's columns for one chunk's rows, e.g. ``W_cᵀ`` (T, n_c) for the
    loadings; a list of blocks (one per chunk, in chunk order) may hold values in this process
    or handles to values held elsewhere (cluster futures): only the operator reads them.

    Examples
    --------
    >>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
    >>> isinstance(DenseOperator(np.ones((4, 3))), ChunkOperator)
    True
    """

    #: Statistics of the kept matrix (its ``‖X‖²``, size, and the MSE's denominator).
    stats: MatrixStats
    #: Whether a chunk task may update its block in place (False: it must work on a copy).
    in_place: bool

    @property
    def shape(self) -> tuple[int, int]:
        """``(n, p)``: kept rows and columns of X."""
        ...

    def map_reduce(
        self, task: ChunkTask, blocks: Sequence | None = None, **shared: Any
    ) -> tuple[list, Any]:
        """Run ``task(products, X_c, block, **shared) -> (new_block, partial)`` on every chunk.

        ``blocks`` gives each chunk its block (None: ``None`` for every chunk).  Must return the
        list of new blocks, in chunk order, and the sum of the partials (arrays, or dicts and
        tuples of arrays summed entry by entry; ``None`` partials sum to ``None``).
        """
        ...

    def map_blocks(self, task: Callable, blocks: Sequence, *args: Any) -> list:
        """Return the blocks ``task(block, *args)``, one per block, kept where the blocks are."""
        ...

    def split_rows(self, matrix_t: np.ndarray) -> list:
        """Return the blocks ``matrix_t[:, rows]`` of a (T, n) matrix, one per chunk."""
        ...

    def join_rows(self, blocks: Sequence) -> np.ndarray:
        """Return the (T, n) matrix in this process whose :meth:`split_rows` gave ``blocks``."""
        ...

    def gather(self, blocks: Sequence) -> list[np.ndarray]:
        """Return the blocks' values as arrays in this process, in order."""
        ...


@runtime_checkable
class FitOperator(ChunkOperator, ChunkProducts, Protocol):
    """An operator the engine fits on: the chunk stream and the products with its chunks.

    Examples
    --------
    >>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
    >>> isinstance(DenseOperator(np.ones((4, 3))), FitOperator)
    True
    """


@runtime_checkable
class DataOperator(FitOperator, Protocol):
    """An operator over the caller's data: where its kept rows and columns sit in the full X.

    Examples
    --------
    >>> from hyperspy_nmfdecide.nmf.operators import DenseOperator
    >>> op = DenseOperator(np.ones((4, 3)), col_mask=np.array([False, True, False]))
    >>> isinstance(op, DataOperator), op.full_shape, op.col_keep.tolist()
    (True, (4, 3), [True, False, True])
    """

    #: ``(n_probe, n_pixel)`` of the data before masks and dark-pixel removal.
    full_shape: tuple[int, int]
    #: Boolean (n_probe,): the probes X keeps.
    row_keep: np.ndarray
    #: Boolean (n_pixel,): the pixels X keeps (masked and dark ones are not).
    col_keep: np.ndarray
    #: Rows per chunk (the largest chunk's), which fixes the order of the float32 sums.
    chunk_rows: int


class InProcessChunks:
    """Chunk tasks run in this process, one chunk after another.

    Subclasses provide ``chunks()`` (yielding ``(rows, X_c)``), ``row_slices`` (the kept rows of
    each chunk, in order), ``stats`` and ``shape``; this class gives them the rest of
    :class:`ChunkOperator`, with blocks as plain arrays.

    Examples
    --------
    >>> class Rows(InProcessChunks):
    ...     row_slices = [slice(0, 2), slice(2, 3)]
    ...     def chunks(self):
    ...         return ((rows, np.ones((rows.stop - rows.start, 2))) for rows in self.row_slices)
    >>> blocks, total = Rows().map_reduce(lambda products, chunk, block: (None, chunk.sum(0)))
    >>> total.tolist()
    [3.0, 3.0]
    """

    #: Blocks may be updated in place (a cluster copies them: a task must not edit its input).
    in_place = True
    row_slices: list[slice]

    def chunks(self) -> Iterator[tuple[slice, Any]]:  # pragma: no cover - every subclass has it
        """Yield ``(rows, X_c)``: a slice of kept rows and that chunk of X."""
        raise NotImplementedError

    def map_reduce(
        self, task: ChunkTask, blocks: Sequence | None = None, **shared: Any
    ) -> tuple[list, Any]:
        """``task(products, X_c, block, **shared) -> (new_block, partial)`` over every chunk.

        Returns the list of new blocks and the sum of the partials (arrays, or dicts and tuples
        of arrays, summed entry by entry; ``None`` partials give ``None``).
        """
        blocks = [None] * len(self.row_slices) if blocks is None else blocks
        pairs = ((chunk, block) for (_, chunk), block in zip(self.chunks(), blocks))
        return run_chunk_tasks(task, self, pairs, shared)

    def map_blocks(self, task: Callable, blocks: Sequence, *args: Any) -> list:
        """``task(block, *args)`` for every block, where the block is."""
        return [task(block, *args) for block in blocks]

    def split_rows(self, matrix_t: np.ndarray) -> list:
        """Blocks ``matrix_t[:, rows]`` (contiguous) of a (T, n) matrix, one per chunk."""
        return [np.ascontiguousarray(matrix_t[:, rows]) for rows in self.row_slices]

    def join_rows(self, blocks: Sequence) -> np.ndarray:
        """The (T, n) matrix that :meth:`split_rows` split."""
        return np.concatenate(self.gather(blocks), axis=1)

    def gather(self, blocks: Sequence) -> list[np.ndarray]:
        """The blocks' values, in this process."""
        return list(blocks)


def run_chunk_tasks(
    task: ChunkTask, products: Any, pairs: Iterable[tuple[Any, Any]], shared: dict[str, Any]
) -> tuple[list, Any]:
    """``task(products, X_c, block, **shared)`` over ``(X_c, block)`` pairs, in order.

    Returns the new blocks and the sum of the partials, added in chunk order: the one loop of
    every operator's ``map_reduce`` (in this process, and on each cluster worker for its
    chunks), so that the float32 sums run in the same order wherever the chunks are.

    Examples
    --------
    >>> task = lambda products, chunk, block: (block, chunk.sum(0))
    >>> blocks, total = run_chunk_tasks(task, None, [(np.ones((2, 2)), "a")], {})
    >>> blocks, total.tolist()
    (['a'], [2.0, 2.0])
    """
    kept, total = [], None
    for chunk, block in pairs:
        new_block, partial = task(products, chunk, block, **shared)
        kept.append(new_block)
        total = partial if total is None else add_partials(total, partial)
    return kept, total


def add_partials(total: Any, partial: Any) -> Any:
    """``total += partial`` for arrays, dicts and tuples of arrays (in place where it can).

    Examples
    --------
    >>> add_partials({"a": np.ones(2)}, {"a": np.ones(2)})["a"].tolist()
    [2.0, 2.0]
    >>> add_partials((np.zeros(1), None), (np.ones(1), None))
    (array([1.]), None)
    """
    if partial is None:
        return total
    if isinstance(total, tuple):
        return tuple(add_partials(a, b) for a, b in zip(total, partial))
    if isinstance(total, dict):
        return {key: add_partials(total[key], partial[key]) for key in total}
    total += partial
    return total
