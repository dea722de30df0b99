"""The data matrix on a dask.distributed cluster: chunk tasks run where each chunk lives.

:class:`ClusterOperator` is a lazy :class:`~.operators.DenseOperator` whose navigation chunks of
X (masked, float32) are computed once into worker memory (dask spills them to disk when a
worker's memory fills).  The blocks of the loadings stay on the worker of their chunk: each pass
sends the stacked factors ``H`` (T × p) to every worker once, runs one task per chunk (update the
chunk's loadings, ``W_cᵀ X_c``, ``W_cᵀ W_c``) and sums the T × p partials in a tree on the
workers.  Only factor-sized matrices reach the client; loadings rows travel only when a run
finishes (its n × k loadings are the result) or a checkpoint is written.

The per-chunk tasks are the engine's own (:func:`~.engine.fit_runs` calls ``map_reduce``); only
where they run differs, so a cluster sweep equals an in-process one up to the order of the
float32 sums.
"""

from __future__ import annotations

import operator as _op
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from .chunks import ChunkTask, add_partials
from .operators import DenseOperator, DenseProducts

__all__ = ["ClusterError", "ClusterOperator", "active_client"]

#: Partials summed per reduction task (a tree of this fan-in).
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


def _sum_partials(*partials: Any) -> Any:
    """A reduction task: a new sum (its inputs are other tasks' results, never edited)."""
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
        super().__init__(data, **options)
        self.client = client
        self.products = DenseProducts()
        with _cluster_errors():
            self._chunks = client.compute(list(self._lazy_blocks()))
            self._workers = self._owners(self._chunks)

    def _owners(self, futures: Sequence) -> list[str | None]:
        """The worker holding each chunk (where its loadings block is placed)."""
        from distributed import wait

        wait(futures)
        who_has = self.client.who_has(futures)
        return [next(iter(who_has.get(f.key, ())), None) for f in futures]

    def map_reduce(
        self, task: ChunkTask, blocks: Sequence | None = None, **shared: Any
    ) -> tuple[list, Any]:
        client = self.client
        with _cluster_errors():
            shared = {
                name: client.scatter(value, broadcast=True, hash=False)
                if isinstance(value, np.ndarray)
                else value
                for name, value in shared.items()
            }
            blocks = [None] * len(self._chunks) if blocks is None else blocks
            # Pinned (loosely) to the chunk's worker: data locality alone let the scheduler
            # run a chunk's task elsewhere now and then, moving its loadings block away.
            results = [
                client.submit(
                    task,
                    self.products,
                    chunk,
                    block,
                    pure=False,
                    workers=None if worker is None else [worker],
                    allow_other_workers=True,
                    **shared,
                )
                for chunk, block, worker in zip(self._chunks, blocks, self._workers)
            ]
            kept = [client.submit(_op.itemgetter(0), result) for result in results]
            partials = [client.submit(_op.itemgetter(1), result) for result in results]
            del results
            while len(partials) > 1:
                partials = [
                    client.submit(_sum_partials, *partials[i : i + _FAN_IN], pure=False)
                    for i in range(0, len(partials), _FAN_IN)
                ]
            return kept, partials[0].result()

    def map_blocks(self, task: Callable, blocks: Sequence, *args: Any) -> list:
        with _cluster_errors():
            return [self.client.submit(task, block, *args, pure=False) for block in blocks]

    def split_rows(self, matrix_t: np.ndarray) -> list:
        with _cluster_errors():
            return [
                self.client.scatter(
                    np.ascontiguousarray(matrix_t[:, rows]),
                    workers=None if worker is None else [worker],
                    hash=False,
                )
                for rows, worker in zip(self.row_slices, self._workers)
            ]

    def gather(self, blocks: Sequence) -> list[np.ndarray]:
        with _cluster_errors():
            return self.client.gather(list(blocks))
