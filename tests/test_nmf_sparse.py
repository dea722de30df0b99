"""The sparse sweep: threaded CSR products, untouched pixels left out, the dense sweep's result."""

import numba
import numpy as np
import pytest
from scipy import sparse

from hyperspy_nmfdecide.nmf import run_sweep, updates
from hyperspy_nmfdecide.nmf.operators import SparseOperator
from hyperspy_nmfdecide.nmf.sparse import csr_times_dense


def spots(n=200, p=400, k=3, seed=0):
    """A seeded spot-like CSR matrix: k patterns of 12 spot pixels each, and its touched pixels.

    Rows 0-4 hold nothing (all-zero patterns); at most 12 k of the p pixels hold anything.
    """
    rng = np.random.default_rng(seed)
    h = np.zeros((k, p))
    for j in range(k):
        h[j, rng.choice(p, 12, replace=False)] = rng.uniform(1, 3, 12)
    w = rng.gamma(0.6, 1.0, (n, k))
    w[:5] = 0
    x = sparse.csr_matrix((rng.poisson(w @ h * 20) / 20).astype(np.float32))
    return x, np.flatnonzero(x.getnnz(axis=0))


@pytest.mark.parametrize("width", [1, 7, 64])
@pytest.mark.parametrize("dtypes", [(np.float32, np.float32), (np.float64, np.float32)])
def test_kernel_is_scipys_product(width, dtypes):
    matrix, _ = spots()
    matrix = matrix.astype(dtypes[0])
    rng = np.random.default_rng(1)
    dense = rng.random((matrix.shape[1], width)).astype(dtypes[1])
    ours = csr_times_dense(matrix, dense)
    assert ours.dtype == np.result_type(*dtypes) and ours.flags.c_contiguous
    # Each entry summed in scipy's order: equal to the bit, zero rows included.
    np.testing.assert_array_equal(ours, matrix @ dense.astype(ours.dtype))
    assert not ours[:5].any()
    left = rng.random((matrix.shape[0], width)).astype(dtypes[1])
    transposed = csr_times_dense(matrix.tocsc().T, left)
    np.testing.assert_array_equal(transposed, matrix.T @ left.astype(transposed.dtype))


def test_kernel_result_does_not_depend_on_the_threads():
    matrix, _ = spots()
    dense = np.random.default_rng(2).random((matrix.shape[1], 40), dtype=np.float32)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        alone = csr_times_dense(matrix, dense)
    finally:
        numba.set_num_threads(threads)
    np.testing.assert_array_equal(csr_times_dense(matrix, dense), alone)


def test_kernel_edge_cases():
    empty = sparse.csr_matrix((3, 5), dtype=np.float32)
    assert csr_times_dense(empty, np.ones((5, 2), np.float32)).tolist() == [[0.0, 0.0]] * 3
    with pytest.raises(TypeError, match="CSR"):
        csr_times_dense(empty.tocsc(), np.ones((5, 2)))
    with pytest.raises(ValueError, match="do not multiply"):
        csr_times_dense(empty, np.ones((4, 2)))


def test_operator_products_are_scipys():
    matrix, touched = spots()
    op = SparseOperator(matrix, chunk_rows=64)
    assert op.shape[1] == touched.size < matrix.shape[1] // 10  # untouched pixels dropped
    rng = np.random.default_rng(3)
    h = rng.random((9, op.shape[1]), dtype=np.float32)
    for rows, chunk in op.chunks():
        wt = rng.random((9, rows.stop - rows.start), dtype=np.float32)
        np.testing.assert_array_equal(op.h_times_xt(chunk, h), (chunk @ h.T).T)
        np.testing.assert_array_equal(op.wt_times_x(chunk, wt), (chunk.T @ wt.T).T)
        # A chunk not cut by the operator is transposed on the spot.
        np.testing.assert_array_equal(op.wt_times_x(chunk.copy(), wt), (chunk.T @ wt.T).T)


def test_sparse_sweep_gives_the_dense_sweep_of_the_same_matrix():
    matrix, touched = spots()
    x = matrix.toarray().astype(np.float64)
    options = {"n_restarts": 4, "random_state": 0}
    dense = run_sweep(x, [2, 3, 4], **options)
    ours = run_sweep(matrix, [2, 3, 4], chunk_rows=64, **options)
    # The products are scipy's to the bit but BLAS sums the dense ones in another order;
    # the float32 difference (~1e-7 relative per product) moves where the runs stop, by at
    # most a few 1e-5 here: 1e-4 is that margin, ten times finer than the benchmark's 0.1 %.
    np.testing.assert_allclose(ours.best_loss, dense.best_loss, rtol=1e-4)
    untouched = np.setdiff1d(np.arange(x.shape[1]), touched)
    for k in (2, 3, 4):
        assert not ours.factors[k][:, untouched].any()
        assert not ours.loadings[k][:5].any()  # all-zero patterns get zero loadings
        # The MSE is the mean over the FULL matrix, untouched pixels included.
        model = ours.loadings[k].astype(np.float64) @ ours.factors[k]
        assert ours.best_loss[k - 2] == pytest.approx(np.mean((x - model) ** 2), rel=1e-4)


def test_float64_input_gives_the_float32_result():
    matrix, _ = spots(seed=4)
    options = {"n_restarts": 3, "random_state": 0}
    single = run_sweep(matrix, [2, 3], **options)
    double = run_sweep(matrix.astype(np.float64), [2, 3], **options)
    np.testing.assert_array_equal(single.loss, double.loss)


def test_no_pixel_touched_is_refused():
    with pytest.raises(ValueError, match="Every pixel is masked or dark"):
        run_sweep(sparse.csr_matrix((6, 10), dtype=np.float32), [1])


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 4, 600), (5, 15, 256)])
def test_hals_tiles_serial_and_parallel_agree_with_whole_rows(shape):
    rng = np.random.default_rng(5)
    r, k, m = shape
    v = rng.random(shape, dtype=np.float32)
    rhs = (rng.random(shape) * k).astype(np.float32)
    factor = rng.random((r, k, 2 * k))
    gram = (factor @ factor.transpose(0, 2, 1)).astype(np.float32)
    eps = np.float32(updates._EPS)
    parallel, serial = v.copy(), v.copy()
    updates._hals_rows(parallel, rhs, gram, eps, 3)
    updates._hals_rows_serial(serial, rhs, gram, eps, 3)
    np.testing.assert_array_equal(parallel, serial)
    expected = v.astype(np.float64)
    for _ in range(3):  # Gauss-Seidel HALS over whole rows, in float64
        for j in range(k):
            step = rhs[:, j] - np.einsum("ro,rom->rm", gram[:, j], expected)
            expected[:, j] = np.maximum(expected[:, j] + step / gram[:, j, j, None], 0)
    np.testing.assert_allclose(parallel, expected, rtol=1e-4, atol=1e-5)
