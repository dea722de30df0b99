"""The numerics of the sweep: solvers, batching, masks, seeds and errors (no HyperSpy)."""

import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from hyperspy_nmfdecide.nmf import BatchedNMF, run_sweep
from hyperspy_nmfdecide.nmf.engine import Run, evaluate_mse, fit_runs
from hyperspy_nmfdecide.nmf.operators import DenseOperator
from hyperspy_nmfdecide.nmf.starts import random_start


def planted(n=240, p=96, k=3, noise=0.0, seed=0):
    """Non-negative rank-k data with sparse, spot-like factors."""
    rng = np.random.default_rng(seed)
    w = rng.gamma(0.6, 1.0, (n, k))
    h = np.full((k, p), 0.02)
    for j in range(k):
        h[j, rng.choice(p, 8, replace=False)] = rng.uniform(1, 3, 8)
    x = w @ h
    if noise:
        x = rng.poisson(x * noise) / noise
    return x, w, h


def test_loss_identity_matches_direct_residual():
    x, _, _ = planted(noise=20.0)
    op = DenseOperator(x, chunk_rows=50)
    rng = np.random.default_rng(1)
    runs = [
        Run(rng.random((240, k), dtype=np.float32), rng.random((k, 96), dtype=np.float32))
        for k in (2, 3, 3, 5)
    ]
    fit_runs(op, runs, max_iter=5, tol=0)
    for run in runs:
        direct = np.mean((x - run.w.astype(float) @ run.h.astype(float)) ** 2)
        assert run.mse == pytest.approx(direct, rel=1e-5)
    np.testing.assert_allclose(evaluate_mse(op, runs), [r.mse for r in runs], rtol=1e-5)


@pytest.mark.parametrize("solver", ["hals", "mu", "als"])
def test_each_solver_recovers_planted_factors(solver):
    x, _, h = planted()
    result = run_sweep(
        x, [2, 3, 4], n_restarts=4, solver=solver, max_iter=400, tol=1e-7, random_state=0
    )
    # Noise-free rank-3 data: the best rank-3 fit is (nearly) exact, rank 2 is not.
    scale = np.mean(x**2)
    assert result.best_loss[1] < 1e-3 * scale
    assert result.best_loss[0] > 1e-2 * scale
    # The factors match the planted spots, up to order (factors are unit-sum).
    found = result.factors[3]
    truth = h / h.sum(axis=1, keepdims=True)
    similarity = (found / np.linalg.norm(found, axis=1, keepdims=True)) @ (
        truth / np.linalg.norm(truth, axis=1, keepdims=True)
    ).T
    assert similarity.max(axis=1).min() > 0.98


def test_history_decreases_and_converged_flag():
    x, _, _ = planted(noise=10.0)
    result = run_sweep(x, [3], n_restarts=3, max_iter=300, tol=1e-5, random_state=0)
    history = result.loss_history[0]
    # HALS never increases the loss; the recorded values carry the float32 precision of the
    # loss identity (~1e-5 of the MSE; the last one is the direct residual).
    assert np.all(np.diff(history) <= 1e-5 * history[1:])
    assert history[-1] == pytest.approx(result.best_loss[0])
    assert result.converged.all()
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        capped = run_sweep(x, [3], n_restarts=2, max_iter=3, tol=0.0, random_state=0)
    assert not capped.converged.any() and (capped.n_iter == 3).all()


def test_runs_stopped_at_max_iter_give_one_warning_saying_where_and_what_to_do():
    x, _, _ = planted(noise=10.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_sweep(x, [2, 3], n_restarts=2, max_iter=2, tol=0.0, random_state=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert len(messages) == 1
    # Every run (two random starts and the NNDSVD one per k) stopped at the limit.
    assert not result.converged.any() and not result.nndsvd_converged.any()
    assert "the kept run at k = 2, 3 stopped at max_iter=2 passes" in messages[0]
    assert "Raise max_iter" in messages[0] and "raise tol" in messages[0]


def test_only_a_kept_run_that_stopped_early_is_warned_about():
    from types import SimpleNamespace

    from hyperspy_nmfdecide.nmf.sweep import _warn_unconverged

    params = SimpleNamespace(max_iter=200, mode="exact", tol=1e-4, polish_iter=0)
    # k = 2 kept restart 1 (converged; restart 0 did not), k = 3 kept its NNDSVD run.
    result = SimpleNamespace(
        k_values=np.array([2, 3]),
        best_run=np.array([1, -1]),
        converged=np.array([[False, True], [True, False]]),
        nndsvd_converged=np.array([True, True]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        _warn_unconverged(result, params)
    result.best_run = np.array([0, -1])
    with pytest.warns(ConvergenceWarning, match=r"kept run at k = 2 stopped at max_iter=200"):
        _warn_unconverged(result, params)


def test_a_sweep_whose_runs_converge_does_not_warn():
    x, _, _ = planted(noise=10.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = run_sweep(x, [1, 2], n_restarts=2, max_iter=1000, tol=1e-3, random_state=0)
    assert result.converged.all() and result.nndsvd_converged.all()


# Refinement is tested within a 60-pass budget that some runs use up: the warning is expected.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_kept_runs_are_refined_within_the_iteration_budget():
    x, _, _ = planted(noise=10.0)
    options = {"n_restarts": 4, "max_iter": 60, "tol": 1e-3, "random_state": 0}
    plain = run_sweep(x, [2, 3, 4], refine_runs=0, **options)
    refined = run_sweep(x, [2, 3, 4], **options)
    # Same starts, same first stop; the kept run then goes on at tol / 100.
    assert np.all(refined.best_loss <= plain.best_loss * (1 + 1e-6))
    assert np.any(refined.best_loss < plain.best_loss * (1 - 1e-4))
    assert refined.n_iter.max() <= 60 and refined.nndsvd_n_iter.max() <= 60


def test_runs_with_different_budgets_share_passes():
    x, _, _ = planted(noise=10.0)
    rng = np.random.default_rng(0)
    runs = [Run(rng.random((240, 3), dtype=np.float32), rng.random((3, 96), dtype=np.float32))]
    runs.append(Run(runs[0].w.copy(), runs[0].h.copy()))
    fit_runs(DenseOperator(x), runs, max_iter=9, tol=0, passes_left=[4, 9])
    assert [run.n_iter for run in runs] == [4, 9]
    assert runs[1].history[:4] == pytest.approx(runs[0].history)
    with pytest.raises(ValueError, match="passes_left"):
        fit_runs(DenseOperator(x), runs, max_iter=9, passes_left=[10, 1])


def test_inner_sweeps_lower_the_loss_reached_in_a_number_of_passes():
    x, _, _ = planted(noise=10.0)
    op = DenseOperator(x)
    starts = [random_start(0, 3, r, op.shape, op.stats.mean, "hals") for r in range(3)]

    def after_eight_passes(sweeps):
        runs = [Run(run.w.copy(), run.h.copy()) for run in starts]
        fit_runs(op, runs, max_iter=8, tol=0, inner_sweeps=sweeps)
        return np.array([run.mse for run in runs])

    plain, accelerated = after_eight_passes(1), after_eight_passes(10)
    # Accelerated HALS (Gillis & Glineur 2012) gets further in the same passes over X.
    assert np.all(accelerated < plain)
    with pytest.raises(ValueError, match="inner_sweeps"):
        fit_runs(op, starts, inner_sweeps=0)


def test_a_continued_run_does_not_stop_on_its_first_pass():
    x, _, _ = planted(noise=10.0)
    op = DenseOperator(x)
    run = random_start(0, 3, 0, op.shape, op.stats.mean, "hals")
    fit_runs(op, [run], max_iter=200, tol=1e-3, inner_sweeps=10)
    first = run.n_iter
    run.converged = False
    # The first pass of a continuation repeats the loadings update of the last one (the run
    # stopped before its factors were updated), so only later passes may end it.
    fit_runs(op, [run], max_iter=200, tol=0.5, inner_sweeps=10)
    assert run.n_iter == first + 2 and run.converged


def test_sparse_input_gives_the_dense_result():
    from scipy import sparse

    x, _, _ = planted(noise=10.0)
    x[:, :5] = 0  # dark pixels, dropped by both operators
    x[x < 0.5] = 0  # mostly zeros, as redrawn spots are
    mask = np.zeros(x.shape[1], dtype=bool)
    mask[10:14] = True
    options = {"n_restarts": 3, "random_state": 0, "col_mask": mask, "tol": 1e-6}
    dense = run_sweep(x, [1, 2, 3], **options)
    csr = sparse.csr_matrix(x)
    sparse_result = run_sweep(csr, [1, 2, 3], chunk_rows=64, **options)
    np.testing.assert_allclose(sparse_result.loss, dense.loss, rtol=1e-3)
    # Unit-sum factors; float32 products in another order drift by ~1e-4 over the iterations.
    np.testing.assert_allclose(sparse_result.factors[3], dense.factors[3], atol=1e-3)
    assert (
        not sparse_result.factors[3][:, :5].any() and not sparse_result.factors[3][:, 10:14].any()
    )
    assert (csr.toarray() == x).all()  # the caller's matrix is untouched
    csr.data[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run_sweep(csr, [1])


def test_pca_loss_is_a_lower_bound_and_nndsvd_is_reported():
    x, _, _ = planted(noise=5.0)
    result = run_sweep(x, [1, 2, 3, 4], n_restarts=3, random_state=0, tol=1e-6)
    assert np.all(result.pca_loss <= result.best_loss * (1 + 1e-4))
    exact = np.linalg.svd(x, compute_uv=False) ** 2
    expected = (np.sum(exact) - np.cumsum(exact)[:4]) / x.size
    np.testing.assert_allclose(result.pca_loss, expected, rtol=1e-3)
    assert result.nndsvd_loss.shape == (4,) and np.isfinite(result.nndsvd_loss).all()
    assert set(result.best_run) <= set(range(-1, 3))


def test_components_ordered_by_integrated_loading_and_unit_sum():
    x, _, _ = planted()
    result = run_sweep(x, [3], n_restarts=2, random_state=0)
    np.testing.assert_allclose(result.factors[3].sum(axis=1), 1.0, rtol=1e-5)
    integrated = result.loadings[3].sum(axis=0)
    assert np.all(np.diff(integrated) <= 0)


def test_same_seed_same_result_and_runs_do_not_depend_on_k_range():
    x, _, _ = planted(noise=10.0)
    a = run_sweep(x, [2, 3, 4], n_restarts=3, random_state=7)
    b = run_sweep(x, [2, 3, 4], n_restarts=3, random_state=7)
    np.testing.assert_array_equal(a.loss, b.loss)
    np.testing.assert_array_equal(a.factors[3], b.factors[3])
    c = run_sweep(x, [2, 3, 4], n_restarts=3, random_state=8)
    assert not np.array_equal(a.loss, c.loss)
    # A run reaches the same minimum alone or among other k: BLAS orders float32 sums
    # differently for a wider stack, and the loss identity carries ~1e-5 of ‖X‖² in float32,
    # hence rtol 1e-3 (another local minimum would differ by far more).
    alone = run_sweep(x, [3], n_restarts=3, random_state=7)
    np.testing.assert_allclose(alone.loss[0], a.loss[1], rtol=1e-3)


def test_generator_and_none_seeds_are_recorded():
    x, _, _ = planted()
    result = run_sweep(x, [2], n_restarts=2, random_state=None)
    again = run_sweep(x, [2], n_restarts=2, random_state=result.entropy)
    np.testing.assert_array_equal(result.loss, again.loss)
    from_generator = run_sweep(x, [2], n_restarts=2, random_state=np.random.default_rng(3))
    assert from_generator.entropy >= 0


# Ten passes keep the test fast; runs stopping at max_iter is expected.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_small_batches_give_the_same_runs():
    x, _, _ = planted(noise=10.0)
    # Few passes: over hundreds of passes float32 rounding differences of the wider GEMM
    # grow chaotically (a non-convex problem), which says nothing about the batching.
    whole = run_sweep(x, [2, 3, 4], n_restarts=3, random_state=0, max_iter=10)
    split = run_sweep(
        x, [2, 3, 4], n_restarts=3, random_state=0, max_iter=10, batch_bytes=4 * 400 * 5
    )
    np.testing.assert_allclose(split.loss, whole.loss, rtol=1e-5)


def test_dask_input_matches_numpy():
    x, _, _ = planted(noise=10.0)
    eager = run_sweep(x, [2, 3], n_restarts=3, random_state=0, chunk_rows=60)
    lazy = run_sweep(da.from_array(x, chunks=(60, -1)), [2, 3], n_restarts=3, random_state=0)
    np.testing.assert_allclose(lazy.loss, eager.loss, rtol=1e-5)
    np.testing.assert_allclose(lazy.factors[3], eager.factors[3], atol=1e-5)


def test_masks_drop_entries_and_restore_zeros():
    x, _, _ = planted(noise=10.0)
    polluted = x.copy()
    col_mask = np.zeros(96, bool)
    col_mask[:5] = True
    row_mask = np.zeros(240, bool)
    row_mask[-10:] = True
    polluted[:, col_mask] = 1e6  # garbage under the masks must not matter
    polluted[row_mask] = 1e6
    masked = run_sweep(
        polluted, [3], n_restarts=2, random_state=0, col_mask=col_mask, row_mask=row_mask
    )
    clean = run_sweep(x[~row_mask][:, ~col_mask], [3], n_restarts=2, random_state=0)
    assert masked.best_loss[0] == pytest.approx(clean.best_loss[0], rel=1e-4)
    assert np.all(masked.factors[3][:, col_mask] == 0)
    assert np.all(masked.loadings[3][row_mask] == 0)
    assert masked.factors[3].shape == (3, 96) and masked.loadings[3].shape == (240, 3)


def test_dark_pixels_are_dropped_exactly():
    x, _, _ = planted()
    dark = np.concatenate([x, np.zeros((240, 20))], axis=1)
    op = DenseOperator(dark)
    assert op.shape == (240, x.shape[1] - int((x.max(axis=0) == 0).sum()))
    result = run_sweep(dark, [3], n_restarts=2, random_state=0)
    assert np.all(result.factors[3][:, 96:] == 0)
    # Loss is an MSE over the kept entries only.
    assert result.best_loss[0] < 1e-2


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.int64])
def test_integer_data_converted_without_overflow(dtype):
    rng = np.random.default_rng(0)
    x = rng.integers(200, 255, size=(60, 40)).astype(dtype)
    op = DenseOperator(x)
    assert op.stats.squared_norm == pytest.approx(float(np.sum(x.astype(float) ** 2)))
    result = run_sweep(x, [1], n_restarts=1, random_state=0)
    assert result.best_loss[0] < np.var(x.astype(float)) * 1.5


def test_user_data_is_never_modified():
    x, _, _ = planted()
    x = x.astype(np.float32)
    x[0, 0] = -1.0
    before = x.copy()
    run_sweep(x, [2], n_restarts=1, negative_values="clip", random_state=0)
    np.testing.assert_array_equal(x, before)


def test_fast_mode_is_close_to_exact():
    x, _, _ = planted(n=400, p=120, k=4, noise=20.0)
    exact = run_sweep(x, [3, 4, 5], n_restarts=5, random_state=0, tol=1e-6)
    fast = run_sweep(x, [3, 4, 5], n_restarts=5, random_state=0, tol=1e-6, mode="fast")
    np.testing.assert_allclose(fast.best_loss, exact.best_loss, rtol=5e-3)
    # The loss reported in fast mode is the exact MSE of the returned factors.
    w, h = fast.loadings[4], fast.factors[4]
    assert fast.best_loss[1] == pytest.approx(np.mean((x - w @ h) ** 2), rel=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"k_values": [0, 1]}, ValueError, "k_range values must be ≥ 1"),
        ({"k_values": []}, ValueError, "k_range is empty"),
        ({"k_values": [2.5]}, TypeError, "k_range must contain integers"),
        ({"k_values": [500]}, ValueError, "k can be at most"),
        ({"n_restarts": 0}, ValueError, "n_restarts"),
        ({"solver": "pgd"}, ValueError, "solver"),
        ({"mode": "quick"}, ValueError, "mode"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"inner_sweeps": 0}, ValueError, "inner_sweeps"),
        ({"random_state": "seed"}, TypeError, "random_state"),
        ({"row_mask": np.ones(240, bool)}, ValueError, "navigation_mask excludes every"),
        ({"col_mask": np.zeros(5, bool)}, ValueError, "signal_mask has 5 entries"),
        ({"col_mask": np.zeros(96, int)}, TypeError, "signal_mask must be a boolean"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    x, _, _ = planted()
    arguments = {"k_values": [2], "n_restarts": 1} | kwargs
    with pytest.raises(error, match=match):
        run_sweep(x, **arguments)


@pytest.mark.parametrize(
    ("value", "match"),
    [(np.nan, "NaN"), (np.inf, "infinite"), (-1.0, "negative values")],
)
def test_bad_values_raise(value, match, lazy):
    x, _, _ = planted()
    x[3, 4] = value
    data = da.from_array(x, chunks=(60, -1)) if lazy else x
    with pytest.raises(ValueError, match=match):
        run_sweep(data, [2], n_restarts=1)


def test_negative_values_can_be_clipped():
    x, _, _ = planted()
    x[3, 4] = -5.0
    result = run_sweep(x, [3], n_restarts=2, random_state=0, negative_values="clip")
    assert np.isfinite(result.best_loss).all()


def test_random_starts_are_random_and_non_negative():
    a = random_start(0, 3, 0, (20, 10), 1.0, "hals")
    b = random_start(0, 3, 1, (20, 10), 1.0, "hals")
    assert (a.w >= 0).all() and (a.h >= 0).all()
    assert not np.allclose(a.w, b.w)
    assert random_start(0, 3, 0, (20, 10), 1.0, "als").h is None


def test_estimator_contract_and_hyperspy_decomposition():
    import hyperspy.api as hs

    x, _, _ = planted()
    model = BatchedNMF(n_components=3, n_restarts=3, random_state=0, max_iter=400, tol=1e-7)
    w = model.fit_transform(x)
    assert w.shape == (240, 3) and model.components_.shape == (3, 96)
    assert model.reconstruction_err_ == pytest.approx(
        np.linalg.norm(x - w @ model.components_), rel=1e-3
    )
    np.testing.assert_allclose(model.transform(x) @ model.components_, x, atol=0.05 * x.max())
    s = hs.signals.Signal1D(x.reshape(12, 20, 96))
    s.decomposition(
        algorithm=BatchedNMF(n_components=3, random_state=0), output_dimension=3, print_info=False
    )
    assert s.learning_results.factors.shape == (96, 3)


@pytest.mark.parametrize("tol, error", [("abc", TypeError), (-1.0, ValueError)])
def test_a_tolerance_that_is_not_a_number_is_named(tol, error):
    x, _, _ = planted(noise=10.0)
    with pytest.raises(error, match="tol must be"):
        run_sweep(x, [1, 2], n_restarts=2, tol=tol, random_state=0)
