"""The data matrix on a dask.distributed cluster: chunk tasks run where each chunk lives.

:class:`ClusterOperator` is a lazy :class:`~.operators.DenseOperator` whose navigation chunks of
X (masked, float32) are computed once into worker memory (dask spills them to disk when a
worker's memory fills).  Consecutive chunks share a worker, and the blocks of the loadings stay
on the worker of their chunk.  A pass sends the stacked factors ``H`` (T × p) to every worker
once and runs *one task per worker*: it does the work of each of that worker's chunks in turn
(update the chunk's loadings, ``W_cᵀ X_c``, ``W_cᵀ W_c``), adding the T × p partials as it
goes, and keeps the new blocks with the sum in its result; one small task per worker hands the
sum over (the blocks stay), and the workers' sums are added in a tree of tasks beyond
``_FAN_IN`` workers, then in the client.  Each task costs a few ms of scheduling whatever its
size, so the number of tasks per pass, not the arithmetic, sets the cost of a pass on small
chunks.  Only factor-sized matrices reach the client; loadings rows travel only when a run
finishes (its n × k loadings are the result) or a checkpoint is written.

The per-chunk work is the engine's own (:func:`~.engine.fit_runs` calls ``map_reduce``); only
where it runs differs, so a cluster sweep equals an in-process one up to the order of the
float32 sums.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from dask.sizeof import sizeof

from .chunks import ChunkTask, add_partials, run_chunk_tasks
from .operators import DenseOperator, DenseProducts

__all__ = ["ClusterError", "ClusterOperator", "active_client"]

#: Workers' sums added per reduction task (a tree of this fan-in), and by this process at last.
_FAN_IN = 8

#: Shared arrays of a pass at least this large are scattered to every worker ahead of its
#: tasks; smaller ones travel inside the tasks (a broadcast scatter is one more round trip).
_SCATTER_BYTES = 2**20


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


class _WorkerResult:
    """One worker's share of a pass, held on that worker: its chunks' new blocks, and the sum
    of their partials until it is taken.

    The client refers to a block as ``(future of this result, index)``; the sum (T × p) is
    taken once, by a small task that frees it, while the blocks stay for the next pass.
    """

    __slots__ = ("blocks", "partial", "taken")

    def __init__(self, blocks: list, partial: Any) -> None:
        self.blocks = blocks
        self.partial = partial
        self.taken = False

    def take_partial(self) -> Any:
        """The sum, handed over once (a second take would count the chunks twice)."""
        if self.taken:
            raise RuntimeError("a worker's partial sum was taken twice")
        partial, self.partial, self.taken = self.partial, None, True
        return partial


@sizeof.register(_WorkerResult)
def _sizeof_worker_result(result: _WorkerResult) -> int:
    """Bytes a worker counts for its result (the sum while it is held), for spilling."""
    return sum(sizeof(block) for block in result.blocks) + sizeof(result.partial)


def _block(value: Any) -> Any:
    """A block's value: scattered as it is, or ``(worker result, index)`` of a pass."""
    if isinstance(value, tuple):
        result, index = value
        return result.blocks[index]
    return value


def _run_chunks(
    task: ChunkTask, products: Any, chunks: list, blocks: list, shared: dict[str, Any]
) -> _WorkerResult:
    """The chunk task on each of one worker's chunks, in order, their partials summed."""
    with _worker_threads():
        pairs = zip(chunks, map(_block, blocks))
        return _WorkerResult(*run_chunk_tasks(task, products, pairs, shared))


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


def _map_blocks(task: Callable, blocks: list, args: tuple) -> _WorkerResult:
    """``task(block, *args)`` for each of one worker's blocks, kept on that worker."""
    return _WorkerResult([task(_block(block), *args) for block in blocks], None)


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
            self._groups: dict[str | None, list[int]] = {}
            for i, worker in enumerate(self._workers):
                self._groups.setdefault(worker, []).append(i)
            self._chunks = [
                client.compute(block, workers=_on(worker), allow_other_workers=True)
                for block, worker in zip(self._lazy_blocks(), self._workers)
            ]
            wait(self._chunks)

    def map_reduce(
        self, task: ChunkTask, blocks: Sequence | None = None, **shared: Any
    ) -> tuple[list, Any]:
        """One task per worker over its chunks, one take of each worker's sum, then the total.

        The new blocks are ``(future of the worker's result, index)``; the workers' sums are
        added in a tree of tasks down to ``_FAN_IN``, which this process gathers and adds (one
        hop less than a last task).
        """
        with _cluster_errors():
            shared = self._scattered(shared)
            blocks = [None] * len(self._chunks) if blocks is None else blocks
            new_blocks: list = [None] * len(self._chunks)
            partials = []
            for worker, members in self._groups.items():
                result = self._submit(
                    _run_chunks,
                    worker,
                    task,
                    self.products,
                    [self._chunks[i] for i in members],
                    [blocks[i] for i in members],
                    shared,
                )
                for index, i in enumerate(members):
                    new_blocks[i] = (result, index)
                partials.append(self._submit(_WorkerResult.take_partial, worker, result))
            while len(partials) > _FAN_IN:
                partials = [
                    self.client.submit(_sum_partials, *partials[i : i + _FAN_IN], pure=False)
                    for i in range(0, len(partials), _FAN_IN)
                ]
            return new_blocks, _sum_partials(*self.client.gather(partials))

    def _scattered(self, shared: dict[str, Any]) -> dict[str, Any]:
        """The large arrays among a pass's shared arguments, sent to every worker once."""
        return {
            name: self.client.scatter(value, broadcast=True, hash=False)
            if isinstance(value, np.ndarray) and value.nbytes >= _SCATTER_BYTES
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
        """``task(block, *args)`` for every chunk's block: one task per worker, kept there."""
        with _cluster_errors():
            new_blocks: list = [None] * len(blocks)
            for worker, members in self._groups.items():
                result = self._submit(_map_blocks, worker, task, [blocks[i] for i in members], args)
                for index, i in enumerate(members):
                    new_blocks[i] = (result, index)
            return new_blocks

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
