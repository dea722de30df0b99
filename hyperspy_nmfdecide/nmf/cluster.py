"""The data matrix on a dask.distributed cluster: chunk tasks run where each chunk lives.

:class:`ClusterOperator` is a lazy :class:`~.operators.DenseOperator` whose navigation chunks of
X (masked, float32) are computed once into worker memory (dask spills them to disk when a
worker's memory fills).  The blocks of the loadings stay on the worker of their chunk: each pass
sends the stacked factors ``H`` (T × p) to every worker once, runs one task per chunk (update the
chunk's loadings, ``W_cᵀ X_c``, ``W_cᵀ W_c``), sums the T × p partials of each worker's chunks on
that worker (one task), and those sums across workers (a tree of tasks beyond ``_FAN_IN``
workers, then in the client).  A chunk task's result holds both its new block and its partial,
so no task per item picks them apart: each task hop costs a few ms of scheduling.  Only
factor-sized matrices reach the client; loadings rows travel only when a run finishes (its
n × k loadings are the result) or a checkpoint is written.

The per-chunk tasks are the engine's own (:func:`~.engine.fit_runs` calls ``map_reduce``); only
where they run differs, so a cluster sweep equals an in-process one up to the order of the
float32 sums.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from dask.sizeof import sizeof

from .chunks import ChunkTask, add_partials
from .operators import DenseOperator, DenseProducts

__all__ = ["ClusterError", "ClusterOperator", "active_client"]

#: Workers' sums added per reduction task (a tree of this fan-in), and by this process at last.
_FAN_IN = 8


class ClusterError(RuntimeError):
    """The dask cluster failed during a sweep (lost scheduler, client or worker)."""


def active_client() -> Any:
    """The default ``dask.distributed`` client, or None (distributed not installed, or none).

    Examples
    --------
    >>> active_client() is None  # no client has been started here
    True
    """
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


@contextmanager
def _cluster_errors():
    """Turn the ways a cluster can fail into one error that says what to do."""
    from distributed import CancelledError, KilledWorker
    from distributed.comm import CommClosedError

    try:
        yield
    except (CancelledError, KilledWorker, CommClosedError, OSError, TimeoutError) as error:
        raise ClusterError(
            f"the dask cluster failed during the sweep ({type(error).__name__}: {error}). "
            "Batches already finished and the last snapshot are kept when the sweep was given "
            "checkpoint=...: start a client again and repeat the same call to resume."
        ) from error


class _ChunkResult:
    """A chunk task's result, held on its worker: the new block, and the partial until summed.

    One task result carries both, so no task per item picks them apart.  The partial (T × p) is
    taken once by its worker's sum, which frees it; the block stays as the chunk's block.
    """

    __slots__ = ("block", "partial", "taken")

    def __init__(self, block: Any, partial: Any) -> None:
        self.block = block
        self.partial = partial
        self.taken = False

    def take_partial(self) -> Any:
        """The partial, handed over once (a second take would count a chunk twice)."""
        if self.taken:
            raise RuntimeError("a chunk's partial was summed twice")
        partial, self.partial, self.taken = self.partial, None, True
        return partial


@sizeof.register(_ChunkResult)
def _sizeof_chunk_result(result: _ChunkResult) -> int:
    """Bytes a worker counts for a chunk result (the partial while it is held), for spilling."""
    return sizeof(result.block) + sizeof(result.partial)


def _block(value: Any) -> Any:
    """A block's value, whether scattered as it is or held in a chunk task's result."""
    return value.block if isinstance(value, _ChunkResult) else value


def _run_chunk(task: ChunkTask, products: Any, chunk: Any, block: Any, **shared: Any) -> Any:
    """The chunk task on its worker; its block and partial kept together."""
    with _worker_threads():
        return _ChunkResult(*task(products, chunk, _block(block), **shared))


@contextmanager
def _worker_threads():
    """numba's threads (the HALS updates) held to the worker's ``OMP_NUM_THREADS`` meanwhile.

    A dask nanny starts each worker with ``OMP_NUM_THREADS=1`` (and BLAS at one thread), so that
    workers side by side do not ask for more cores than there are; numba does not read it and
    starts one thread per core in every worker.  Its parallel regions then wait for threads the
    other workers' tasks keep busy: on 2 workers of a 2-core machine a chunk task of a small
    chunk took ~100 ms instead of 0.2 ms, most of a pass's cost.  Restarts are independent, so
    the number of threads does not change the result.
    """
    import numba

    previous = numba.get_num_threads()
    try:
        wanted = int(os.environ["OMP_NUM_THREADS"])
    except (KeyError, ValueError):
        wanted = previous
    numba.set_num_threads(max(1, min(wanted, previous)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _worker_sum(*results: _ChunkResult) -> Any:
    """The sum of the partials of one worker's chunks (taken from them: their memory is freed)."""
    total = None
    for result in results:
        partial = result.take_partial()
        total = partial if total is None else add_partials(total, partial)
    return total


def _sum_partials(*partials: Any) -> Any:
    """A sum across workers: a new one (its inputs are others' results, never edited)."""
    total = _copy(partials[0])
    for partial in partials[1:]:
        total = add_partials(total, partial)
    return total


def _copy(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, dict):
        return {key: _copy(v) for key, v in value.items()}
    return None if value is None else np.array(value, copy=True)


def _assigned(workers: Sequence[str], n_chunks: int) -> list[str | None]:
    """The worker of each chunk: consecutive chunks share one, in the workers' order.

    Each worker's partials are summed first, so the order of the float32 sums follows this
    assignment: it depends on the number of workers only, never on where the scheduler would
    have put a chunk, and a sweep resumed on a cluster of as many workers ends bit for bit.

    Examples
    --------
    >>> _assigned(["a", "b"], 5)
    ['a', 'a', 'a', 'b', 'b']
    >>> _assigned([], 2)
    [None, None]
    """
    if not workers:
        return [None] * n_chunks
    return [workers[i * len(workers) // n_chunks] for i in range(n_chunks)]


def _on(worker: str | None) -> list[str] | None:
    """``workers=`` of a task placed on ``worker`` (None: anywhere)."""
    return None if worker is None else [worker]


def _on_block(task: Callable, block: Any, *args: Any) -> Any:
    return task(_block(block), *args)


class ClusterOperator(DenseOperator):
    """A lazy data matrix whose chunks are held, and worked on, by a dask cluster.

    Parameters
    ----------
    data
        2-D dask array (n_probe, n_pixel); chunks must hold whole patterns (it is rechunked
        along the pixels otherwise, as for :class:`DenseOperator`).
    client
        A ``distributed.Client``.
    **options
        As for :class:`DenseOperator`.

    Examples
    --------
    >>> import dask.array as da
    >>> from distributed import Client
    >>> client = Client(processes=False, n_workers=1, dashboard_address=":0")
    >>> x = da.ones((40, 9), chunks=(10, 9), dtype="float32")
    >>> op = ClusterOperator(x, client)
    >>> len(op.row_slices), op.stats.squared_norm
    (4, 360.0)
    >>> client.close()
    """

    in_place = False

    def __init__(self, data: Any, client: Any, **options: Any) -> None:
        from distributed import wait

        super().__init__(data, **options)
        self.client = client
        self.products = DenseProducts()
        with _cluster_errors():
            self._workers = _assigned(sorted(client.nthreads()), len(self.row_slices))
            self._chunks = [
                client.compute(block, workers=_on(worker), allow_other_workers=True)
                for block, worker in zip(self._lazy_blocks(), self._workers)
            ]
            wait(self._chunks)

    def map_reduce(
        self, task: ChunkTask, blocks: Sequence | None = None, **shared: Any
    ) -> tuple[list, Any]:
        """One task per chunk on the chunk's worker, one sum per worker, then across workers.

        The new blocks are the chunk tasks' own futures (their results hold the block); the
        workers' sums are added in a tree of tasks down to ``_FAN_IN``, which this process
        gathers and adds (one hop less than a last task).
        """
        with _cluster_errors():
            shared = self._scattered(shared)
            blocks = [None] * len(self._chunks) if blocks is None else blocks
            results = [
                self._submit(_run_chunk, worker, task, self.products, chunk, block, **shared)
                for chunk, block, worker in zip(self._chunks, blocks, self._workers)
            ]
            by_worker: dict[str | None, list] = {}
            for result, worker in zip(results, self._workers):
                by_worker.setdefault(worker, []).append(result)
            partials = [
                self._submit(_worker_sum, worker, *group) for worker, group in by_worker.items()
            ]
            while len(partials) > _FAN_IN:
                partials = [
                    self.client.submit(_sum_partials, *partials[i : i + _FAN_IN], pure=False)
                    for i in range(0, len(partials), _FAN_IN)
                ]
            return results, _sum_partials(*self.client.gather(partials))

    def _scattered(self, shared: dict[str, Any]) -> dict[str, Any]:
        """The arrays among a pass's shared arguments, sent to every worker once."""
        return {
            name: self.client.scatter(value, broadcast=True, hash=False)
            if isinstance(value, np.ndarray)
            else value
            for name, value in shared.items()
        }

    def _submit(self, function: Callable, worker: str | None, *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` as a task placed on ``worker`` when it is there.

        Pinned loosely: data locality alone let the scheduler run a chunk's task elsewhere now
        and then, moving its loadings block away; a lost worker's tasks may still run elsewhere.
        """
        return self.client.submit(
            function,
            *args,
            pure=False,
            workers=_on(worker),
            allow_other_workers=True,
            **kwargs,
        )

    def map_blocks(self, task: Callable, blocks: Sequence, *args: Any) -> list:
        with _cluster_errors():
            return [
                self.client.submit(_on_block, task, block, *args, pure=False) for block in blocks
            ]

    def split_rows(self, matrix_t: np.ndarray) -> list:
        with _cluster_errors():
            return [
                self.client.scatter(
                    np.ascontiguousarray(matrix_t[:, rows]),
                    workers=_on(worker),
                    hash=False,
                )
                for rows, worker in zip(self.row_slices, self._workers)
            ]

    def gather(self, blocks: Sequence) -> list[np.ndarray]:
        with _cluster_errors():
            return [_block(value) for value in self.client.gather(list(blocks))]
