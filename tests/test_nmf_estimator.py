"""BatchedNMF keeps scikit-learn's estimator contract and refuses input NMF cannot fit."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from hyperspy_nmfdecide.nmf import BatchedNMF


@parametrize_with_checks([BatchedNMF()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((40, 2)) @ rng.random((2, 12))


@pytest.mark.parametrize("method", ["transform", "inverse_transform"])
def test_methods_that_need_a_fit_say_so(data, method):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        getattr(BatchedNMF(), method)(data)


@pytest.mark.parametrize(
    "spoil, match",
    [
        (lambda x: np.where(x > 0.5, -x, x), r"Negative values in data \(minimum -"),
        (lambda x: np.where(x > 0.5, np.nan, x), "NaN values in data"),
        (lambda x: np.where(x > 0.5, np.inf, x), "Infinite values"),
        (lambda x: x[0], "Expected 2D array, got 1D array"),
    ],
    ids=["negative", "nan", "inf", "1-D"],
)
@pytest.mark.parametrize("method", ["fit", "transform"])
def test_bad_input_raises_a_clear_error(data, spoil, match, method):
    model = BatchedNMF(random_state=0)
    if method == "transform":
        model.fit(data)
    with pytest.raises(ValueError, match=match):
        getattr(model, method)(spoil(data))


def test_transform_needs_the_fitted_features(data):
    model = BatchedNMF(random_state=0).fit(data)
    assert model.n_features_in_ == 12
    with pytest.raises(ValueError, match="X has 5 features"):
        model.transform(data[:, :5])


def test_inverse_transform_rebuilds_data_from_loadings(data):
    model = BatchedNMF(random_state=0, max_iter=500, tol=1e-8).fit(data)
    rebuilt = model.inverse_transform(model.transform(data))
    np.testing.assert_allclose(rebuilt, data, atol=0.02 * data.max())
    with pytest.raises(ValueError, match="inverse_transform takes loadings"):
        model.inverse_transform(data)
