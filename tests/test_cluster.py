"""The sweep on a dask.distributed cluster: same result, loadings stay on the workers, failures.

A ``LocalCluster`` of two worker processes stands in for a cluster: tasks and their arguments
are pickled and run in other processes, as they would on other machines.
"""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from hyperspy_nmfdecide.nmf import run_sweep  # noqa: E402
from hyperspy_nmfdecide.nmf.cluster import ClusterError, ClusterOperator  # noqa: E402
from hyperspy_nmfdecide.nmf.dispatch import make_operator  # noqa: E402
from hyperspy_nmfdecide.nmf.engine import Run, _pass, _Stack  # noqa: E402

# Capped at a few tens of passes to stay fast: runs stopping at max_iter is expected here and
# the ConvergenceWarning that says so is not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SWEEP = dict(k_values=[2, 3], n_restarts=3, random_state=0, max_iter=40)


def _new_cluster():
    return distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )


@pytest.fixture(scope="module")
def cluster():
    with _new_cluster() as local_cluster:
        yield local_cluster


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as active:
        yield active


@pytest.fixture(scope="module")
def matrix():
    """Three non-negative sources, mixed over 400 probes, with a little noise."""
    rng = np.random.default_rng(0)
    x = rng.random((400, 3)) @ rng.random((3, 60)) + 0.01 * rng.random((400, 60))
    return x.astype(np.float32)


def test_a_cluster_sweep_equals_the_in_process_sweep(matrix, cluster):
    lazy = da.from_array(matrix, chunks=(100, -1))
    in_process = run_sweep(lazy, **SWEEP)
    with distributed.Client(cluster):
        assert isinstance(make_operator(lazy), ClusterOperator)
        on_cluster = run_sweep(lazy, **SWEEP)
    # Only the order of the float32 sums over chunks differs.
    np.testing.assert_allclose(on_cluster.best_loss, in_process.best_loss, rtol=1e-4)
    for k in SWEEP["k_values"]:
        np.testing.assert_allclose(
            on_cluster.loadings[k], in_process.loadings[k], rtol=1e-2, atol=1e-3
        )


def test_loadings_blocks_stay_on_the_worker_of_their_chunk(matrix, client):
    operator = ClusterOperator(da.from_array(matrix, chunks=(100, -1)), client)
    rng = np.random.default_rng(1)
    stack = _Stack([Run(rng.random((400, 2)), rng.random((2, 60))) for _ in range(3)], operator)
    wtx, wtw, _ = _pass(operator, stack, "hals", update_loadings=True)
    # What reached this process is factor-sized: T × p and k × k, never n rows.
    assert wtx.shape == (6, 60) and wtw[2].shape == (3, 2, 2)
    # A block is (its worker's result, index): held where its chunk is.
    holders = [block[0] for block in stack.blocks]
    assert all(isinstance(holder, distributed.Future) for holder in holders)
    chunk_owner = client.who_has(operator._chunks)
    block_owner = client.who_has(holders)
    for chunk, holder in zip(operator._chunks, holders):
        assert set(block_owner[holder.key]) == set(chunk_owner[chunk.key])


def test_a_pattern_split_across_chunks_is_rechunked(matrix, client):
    by_pixels = da.from_array(matrix, chunks=(100, 20))
    whole = da.from_array(matrix, chunks=(100, -1))
    np.testing.assert_array_equal(
        run_sweep(by_pixels, **SWEEP).best_loss, run_sweep(whole, **SWEEP).best_loss
    )


def test_a_lost_cluster_is_a_clear_error_and_the_checkpoint_resumes_exactly(matrix, tmp_path):
    lazy = da.from_array(matrix, chunks=(100, -1))
    doomed = _new_cluster()
    passes = []

    def lose_the_cluster():
        passes.append(1)
        if len(passes) == 15:  # in the first batch, after its first snapshots
            doomed.close()

    with distributed.Client(doomed):
        with pytest.raises(ClusterError, match="repeat the same call to resume"):
            run_sweep(
                lazy, **SWEEP, checkpoint=tmp_path, checkpoint_interval=0, on_pass=lose_the_cluster
            )
    with _new_cluster() as fresh, distributed.Client(fresh):
        resumed = run_sweep(lazy, **SWEEP, checkpoint=tmp_path, checkpoint_interval=0)
        uninterrupted = run_sweep(lazy, **SWEEP)
    np.testing.assert_array_equal(resumed.loss, uninterrupted.loss)
    np.testing.assert_array_equal(resumed.loadings[3], uninterrupted.loadings[3])


def test_a_pass_is_one_task_and_one_take_of_its_sum_per_worker(matrix, client):
    operator = ClusterOperator(da.from_array(matrix, chunks=(50, -1)), client)
    rng = np.random.default_rng(2)
    stack = _Stack([Run(rng.random((400, 2)), rng.random((2, 60))) for _ in range(2)], operator)
    with distributed.get_task_stream(client) as tasks:
        _pass(operator, stack, "hals", update_loadings=True)
    names = sorted(distributed.utils.key_split(task["key"]) for task in tasks.data)
    # Each task costs a few ms of scheduling: not one per chunk (8 here), one per worker.
    n_workers = len(client.nthreads())
    assert names == ["run_chunks"] * n_workers + ["take_partial"] * n_workers
    # The blocks stay usable after their worker's sum was taken, in chunk order.
    blocks = operator.gather(stack.blocks)
    assert [block.shape for block in blocks] == [(4, 50)] * 8


def test_consecutive_chunks_share_a_worker_whatever_the_scheduler_would_choose(matrix, client):
    """Each worker sums its chunks first: the sums' order follows the chunks, not the placement."""
    operator = ClusterOperator(da.from_array(matrix, chunks=(50, -1)), client)
    workers = sorted(client.nthreads())
    assert operator._workers == [workers[0]] * 4 + [workers[1]] * 4
    who_has = client.who_has(operator._chunks)
    assert [list(who_has[chunk.key]) for chunk in operator._chunks] == [
        [worker] for worker in operator._workers
    ]


def test_shared_factors_scattered_ahead_give_the_same_pass(matrix, client, monkeypatch):
    """Large H is scattered to the workers, small H rides in the tasks: the sums are the same."""
    from hyperspy_nmfdecide.nmf import cluster

    operator = ClusterOperator(da.from_array(matrix, chunks=(100, -1)), client)
    rng = np.random.default_rng(3)
    runs = [Run(rng.random((400, 2)), rng.random((2, 60))) for _ in range(2)]
    inline = _pass(
        operator, _Stack([Run(r.w, r.h) for r in runs], operator), "hals", update_loadings=True
    )
    monkeypatch.setattr(cluster, "_SCATTER_BYTES", 0)
    scattered = _pass(operator, _Stack(runs, operator), "hals", update_loadings=True)
    np.testing.assert_array_equal(scattered[0], inline[0])
    np.testing.assert_array_equal(scattered[1][2], inline[1][2])


def test_a_workers_sum_is_handed_over_once():
    from hyperspy_nmfdecide.nmf.cluster import _WorkerResult

    result = _WorkerResult([np.zeros(2)], np.ones(3))
    assert result.take_partial().tolist() == [1.0, 1.0, 1.0]
    assert result.partial is None and len(result.blocks) == 1  # the sum freed, the block kept
    with pytest.raises(RuntimeError, match="taken twice"):
        result.take_partial()
