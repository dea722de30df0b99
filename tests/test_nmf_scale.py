"""Every solver fits data of any physical scale alike: counts, electrons, normalised intensities.

The sweep fits X divided by a power of two near its rms (exact in floating point), so the best
MSE divided by scale² is the same at any scale, up to the rounding of the fit; before, the
solvers' absolute float32-eps guards made data × 1e-12 fit worse at every k (MU the all-zero
model) and data × 1e17 overflow float32 products (MSE 0).
"""

import warnings

import numpy as np
import pytest
from scipy import sparse

from hyperspy_nmfdecide.nmf import run_sweep
from hyperspy_nmfdecide.nmf.operators import RMS_WINDOW, DenseOperator, SparseOperator

SCALES = [1e-15, 1e-6, 1.0, 1e6, 1e15]
BEYOND_FLOAT32_PRODUCTS = [1e17, 1e20, 1e25, 1e30]
SOLVERS = ["hals", "mu", "als"]

#: MU approaches its minimum slowly (sublinearly): the float32 rounding of another scale moves
#: where its runs stop by up to 3.5e-4 (measured over the cases here; dense and sparse input at
#: scale 1 differ alike); HALS and ALS agree to 4e-5.
TOLERANCE = {"hals": 1e-4, "mu": 1e-3, "als": 1e-4}


def planted(seed: int = 1) -> np.ndarray:
    """Poisson counts (rms ~ 30) of three spotty components: k = 3 is the right rank."""
    rng = np.random.default_rng(seed)
    h = np.full((3, 40), 0.05)
    for j in range(3):
        h[j, rng.choice(40, 6, replace=False)] = rng.uniform(1, 3, 6)
    return rng.poisson(rng.gamma(0.8, 20.0, (100, 3)) @ h).astype(np.float64)


def best_loss(data, solver: str, mode: str) -> np.ndarray:
    """The sweep's best MSE at k = 2, 3, failing on any RuntimeWarning (overflow, 0/0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning is not what is tested here
        warnings.simplefilter("error", RuntimeWarning)
        sweep = run_sweep(
            data,
            [2, 3],
            6,
            solver=solver,
            mode=mode,
            random_state=0,
            tol=1e-7,
            max_iter=1000,
            polish_iter=1000,
        )
    return sweep.best_loss


@pytest.fixture(scope="module")
def at_scale_one():
    x = planted()
    return {
        (solver, mode, kind): best_loss(
            x if kind == "dense" else sparse.csr_matrix(x), solver, mode
        )
        for solver in SOLVERS
        for mode in ("exact", "fast")
        for kind in ("dense", "sparse")
    }


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("scale", SCALES + BEYOND_FLOAT32_PRODUCTS)
def test_best_mse_scales_with_the_square_of_the_data(at_scale_one, scale, solver, mode, kind):
    x = planted() * scale
    data = x if kind == "dense" else sparse.csr_matrix(x)
    loss = best_loss(data, solver, mode) / scale**2
    reference = at_scale_one[solver, mode, kind]
    np.testing.assert_allclose(loss, reference, rtol=TOLERANCE[solver])
    assert loss[1] <= loss[0], "k = 3 fits worse than k = 2"


@pytest.mark.parametrize("scale", [1e-15, 1e15])
def test_loadings_are_in_the_units_of_the_data(scale):
    x = planted()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one = run_sweep(x, [3], 3, random_state=0, tol=1e-7, max_iter=1000)
        scaled = run_sweep(x * scale, [3], 3, random_state=0, tol=1e-7, max_iter=1000)
    model_one = one.loadings[3].astype(float) @ one.factors[3]
    model = scaled.loadings[3].astype(float) @ scaled.factors[3] / scale
    assert np.linalg.norm(model - model_one) < 1e-3 * np.linalg.norm(model_one)
    assert all(np.isfinite(h).all() for h in scaled.loss_history)


def test_ordinary_data_are_fitted_as_given():
    # The reference scans' rms (4.5, 11.8) and this one's (~30) are inside the window: their
    # seeded results stay bit for bit what they were.
    x = planted()
    assert RMS_WINDOW[0] < np.sqrt((x**2).mean()) < RMS_WINDOW[1]
    assert DenseOperator(x, normalise=True).scale == 1.0
    assert DenseOperator(x * 1e-12, normalise=True).scale == 2.0**-35


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("scale", [1e40, 1e100, 1e-40, 1e-100])
def test_float64_values_beyond_float32s_range_are_fitted(scale, kind):
    # Above float32's largest value, or below its smallest normal one (precision lost).
    x = planted()
    data = x * scale if kind == "dense" else sparse.csr_matrix(x * scale)
    loss = best_loss(data, "hals", "exact") / scale**2
    np.testing.assert_allclose(loss, best_loss(x, "hals", "exact"), rtol=1e-4)


@pytest.mark.parametrize("make", [DenseOperator, SparseOperator])
def test_finite_values_beyond_float32_are_not_called_infinite(make):
    x = planted() * 1e40
    data = x if make is DenseOperator else sparse.csr_matrix(x)
    with pytest.raises(ValueError, match="finite values .* beyond float32") as info:
        make(data)
    assert "infinite" not in str(info.value)


def test_infinite_values_are_still_called_infinite():
    x = planted()
    x[3, 4] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        run_sweep(x, [2], 2)


@pytest.mark.parametrize("scale", [1e-15, 1e15, 1e40, 1e-40])
def test_lazy_input_is_fitted_as_numpy_at_any_scale(scale):
    import dask.array as da

    x = planted() * scale
    lazy = da.from_array(x, chunks=(100, -1))  # one chunk: the same float32 sums as numpy
    np.testing.assert_array_equal(best_loss(lazy, "hals", "exact"), best_loss(x, "hals", "exact"))


@pytest.mark.parametrize("scale", [1e-15, 1e15])
def test_the_estimator_fits_any_scale(scale):
    from hyperspy_nmfdecide.nmf import BatchedNMF

    x = planted()
    options = {"n_components": 3, "random_state": 0, "tol": 1e-7, "max_iter": 1000}
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        one = BatchedNMF(**options).fit(x)
        scaled = BatchedNMF(**options)
        w = scaled.fit_transform(x * scale)
    np.testing.assert_allclose(
        scaled.reconstruction_err_ / scale, one.reconstruction_err_, rtol=1e-4
    )
    model = w @ scaled.components_
    assert np.linalg.norm(model / scale - x) < 1.01 * one.reconstruction_err_
