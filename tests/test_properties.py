"""Property-based tests of ``nmf_sweep``: the invariants a user relies on, over many inputs.

Hypothesis draws small scans (navigation 2-6 × 2-6, patterns 4-12 px) of every dtype a
detector writes, intensities scaled by 1e-6 … 1e6, random signal and navigation masks that
keep something, probe and pixel reorderings and lazy chunkings, and checks what must hold for
every one of them: a finite loss, a best loss that does not rise with k and does not beat the
truncated SVD, eager = lazy, the same seed = the same result, the input left untouched, masked
pixels and probes zero in the factors and loadings, and clear errors for bad input.

The examples are few (each sweep costs ~0.5 s) and derandomised, so CI runs the same cases
every time in about a minute; ``NMFDECIDE_HYPOTHESIS_PROFILE=explore`` runs many more random
ones.  Each data set is drawn from a seed, so a failing example is printed as a few numbers.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import hyperspy.api as hs
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

# The conftest's autouse fixture (a fresh working directory, no progress bars) is function
# scoped; it holds nothing an example could leak into the next, so hypothesis may reuse it.
settings.register_profile(
    "ci",
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "explore",
    parent=settings.get_profile("ci"),
    max_examples=200,
    derandomize=False,
)
settings.load_profile(os.environ.get("NMFDECIDE_HYPOTHESIS_PROFILE", "ci"))

K_RANGE = range(1, 3)
SWEEP = dict(n_restarts=2, max_iter=20, random_state=0, show_progressbar=False, store=False)
# Losses are accumulated in float32 on the patterns: relative differences below this are noise.
RTOL = 1e-4
# A fit can be exact (masks that keep two probes make the matrix rank 2): its loss is then
# float32 rounding, ~1e-8 of the data's mean square, which no relative tolerance compares.
FLOOR = 1e-6
DTYPES = ["uint8", "uint16", "int32", "float32", "float64"]
# Known today (issue 13, class 2, being fixed in nmf/): outside 1e-6 … 1e6 the absolute
# epsilons of the solvers distort the fit; the range is widened when that fix lands.
SCALE_EXPONENTS = range(-6, 7)


@dataclass(frozen=True)
class Scan:
    """A drawn scan: everything needed to rebuild it, so a failure prints as a few numbers."""

    nav_shape: tuple[int, int]
    sig_shape: tuple[int, int]
    dtype: str
    scale: float
    seed: int
    signal_mask: bool
    navigation_mask: bool
    chunks: int

    def data(self) -> np.ndarray:
        """Poisson counts around a non-negative rank-3 model, scaled for float dtypes."""
        rng = np.random.default_rng(self.seed)
        n_probe, n_pixel = np.prod(self.nav_shape), np.prod(self.sig_shape)
        weights = rng.gamma(1.0, 1.0, (n_probe, 3))
        patterns = rng.gamma(0.5, 1.0, (3, n_pixel))
        # A few hundred counts at most, so that uint8 holds every value.
        expected = 20.0 * weights @ patterns / (weights @ patterns).mean()
        counts = rng.poisson(np.minimum(expected, 200.0)).astype(np.float64)
        if np.dtype(self.dtype).kind == "f":
            counts *= self.scale
        return counts.reshape(self.nav_shape + self.sig_shape).astype(self.dtype)

    def floor(self) -> float:
        """The loss below which two losses are both zero: FLOOR × the data's mean square."""
        return FLOOR * float(np.mean(self.data().astype(np.float64) ** 2))

    def masks(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(signal_mask, navigation_mask), True = excluded; each keeps at least two entries."""
        rng = np.random.default_rng(self.seed + 1)
        out = []
        for wanted, shape in (
            (self.signal_mask, self.sig_shape),
            (self.navigation_mask, self.nav_shape),
        ):
            if not wanted:
                out.append(None)
                continue
            mask = rng.random(shape) < 0.3
            keep = rng.choice(mask.size, 2, replace=False)
            mask.flat[keep] = False
            out.append(mask)
        return tuple(out)

    def signal(self, lazy: bool = False, data: np.ndarray | None = None):
        s = hs.signals.Signal2D(self.data() if data is None else data)
        s.set_signal_type("nmf_decide")
        if lazy:
            s = s.as_lazy()
            s.data = s.data.rechunk((self.chunks, -1, -1, -1))
        return s


@st.composite
def scans(draw, *, masks: bool = True, float_only: bool = False) -> Scan:
    """Small scans over shapes, dtypes, scales, masks and lazy chunkings."""
    nav_shape = (draw(st.integers(2, 6)), draw(st.integers(2, 6)))
    return Scan(
        nav_shape=nav_shape,
        sig_shape=(draw(st.integers(4, 12)), draw(st.integers(4, 12))),
        dtype=draw(st.sampled_from(DTYPES[3:] if float_only else DTYPES)),
        scale=10.0 ** draw(st.sampled_from(SCALE_EXPONENTS)),
        seed=draw(st.integers(0, 2**16)),
        signal_mask=masks and draw(st.booleans()),
        navigation_mask=masks and draw(st.booleans()),
        chunks=draw(st.integers(1, nav_shape[1])),
    )


def sweep(s, scan: Scan | None = None, **options):
    """``nmf_sweep`` over k = 1, 2 with the scan's masks, quiet about max_iter."""
    signal_mask, navigation_mask = scan.masks() if scan is not None else (None, None)
    options = {
        "signal_mask": False if signal_mask is None else signal_mask,
        "navigation_mask": navigation_mask,
        **SWEEP,
        **options,
    }
    with warnings.catch_warnings():
        # max_iter=20 is meant to stop early: the ConvergenceWarning says so and is expected.
        warnings.simplefilter("ignore")
        return s.nmf_sweep(K_RANGE, **options)


@given(scans())
def test_loss_finite_monotone_and_above_svd(scan):
    s = scan.signal()
    before = s.data.copy()
    result = sweep(s, scan)
    best, pca = result.best_loss, result.pca_loss
    assert np.all(np.isfinite(result.loss)) and np.all(np.isfinite(best))
    assert np.all(best >= 0)
    # More components never fit worse: the best run per k includes the NNDSVD start.
    assert best[1] <= best[0] * (1 + RTOL) + scan.floor()
    # No non-negative rank-k fit beats the rank-k truncated SVD.
    assert np.all(best >= pca * (1 - RTOL) - scan.floor())
    # The input is not modified, in value or dtype.
    assert s.data.dtype == before.dtype
    np.testing.assert_array_equal(s.data, before)


@given(scans())
def test_masked_pixels_and_probes_are_zero(scan):
    signal_mask, navigation_mask = scan.masks()
    result = sweep(scan.signal(), scan)
    for k in K_RANGE:
        factors, loadings = result.best_factorisation(k)
        assert np.all(np.isfinite(factors)) and np.all(np.isfinite(loadings))
        assert np.all(factors >= 0) and np.all(loadings >= 0)
        if signal_mask is not None:
            assert np.all(factors[:, signal_mask.ravel()] == 0)
        if navigation_mask is not None:
            assert np.all(loadings[navigation_mask.ravel()] == 0)


@given(scans())
# Found by the explore profile: two probes kept, so k = 2 fits exactly and both losses are
# rounding (1.9e-8 eager, 1.4e-7 lazy, against 39 at k = 1); equal within FLOOR.
@example(Scan((2, 2), (4, 8), "uint8", 1e-6, 6, True, True, 1))
def test_eager_and_lazy_agree(scan):
    eager = sweep(scan.signal(), scan)
    lazy = sweep(scan.signal(lazy=True), scan)
    close = dict(rtol=RTOL, atol=scan.floor())
    np.testing.assert_allclose(lazy.best_loss, eager.best_loss, **close)
    np.testing.assert_allclose(lazy.loss, eager.loss, **close)


@given(scans())
def test_same_seed_same_result(scan):
    s = scan.signal()
    first, second = sweep(s, scan), sweep(s, scan)
    np.testing.assert_array_equal(first.loss, second.loss)
    for k in K_RANGE:
        for a, b in zip(first.best_factorisation(k), second.best_factorisation(k)):
            np.testing.assert_array_equal(a, b)


@given(scans(masks=False, float_only=True))
def test_loss_scales_with_the_square_of_the_intensity(scan):
    # Any physical unit (counts, electrons, normalised intensities) gives the same fit.
    unit = Scan(**{**scan.__dict__, "scale": 1.0})
    scaled, reference = sweep(scan.signal()), sweep(unit.signal())
    atol = unit.floor()
    np.testing.assert_allclose(
        scaled.best_loss / scan.scale**2, reference.best_loss, rtol=1e-3, atol=atol
    )
    np.testing.assert_allclose(
        scaled.pca_loss / scan.scale**2, reference.pca_loss, rtol=RTOL, atol=atol
    )


@given(scans(masks=False), st.data())
def test_reordering_probes_or_pixels_changes_nothing_it_should_not(scan, data):
    """A reordered scan is the same data: the SVD bound and the rank-1 optimum do not move."""
    x = scan.data()
    order = data.draw(st.sampled_from(["probes", "pixels", "transpose"]), label="order")
    rng = np.random.default_rng(scan.seed + 2)
    if order == "transpose":
        y = x.transpose(1, 0, 3, 2)
    else:
        flat = x.reshape(scan.nav_shape[0] * scan.nav_shape[1], -1)
        axis = 0 if order == "probes" else 1
        y = np.take(flat, rng.permutation(flat.shape[axis]), axis=axis).reshape(x.shape)
    reordered, reference = sweep(scan.signal(data=np.ascontiguousarray(y))), sweep(scan.signal())
    close = dict(rtol=RTOL, atol=scan.floor())
    np.testing.assert_allclose(reordered.pca_loss, reference.pca_loss, **close)
    # Rank 1: the non-negative optimum is the leading singular pair (Perron-Frobenius), which
    # the NNDSVD start is, so every order reaches it.
    np.testing.assert_allclose(reordered.best_loss[0], reference.best_loss[0], **close)
    np.testing.assert_allclose(reference.best_loss[0], reference.pca_loss[0], **close)


# --- bad input --------------------------------------------------------------------------------


def _bad_value(value):
    def spoil(x):
        x = x.astype(np.float64)
        x.flat[0] = value
        return x

    return spoil


BAD_DATA = {"NaN": _bad_value(np.nan), "negative": _bad_value(-1.0), "inf": _bad_value(np.inf)}


@given(scans(masks=False), st.sampled_from(sorted(BAD_DATA)))
def test_bad_values_raise_and_say_what_to_do(scan, bad):
    s = scan.signal(data=BAD_DATA[bad](scan.data()))
    with pytest.raises(ValueError, match="(?i)data contain"):
        sweep(s)


# Each bad argument, with the word the error message must hold so that the user knows which
# argument to fix.
BAD_ARGUMENTS = {
    "k_range is zero": (dict(k_range=[0, 1]), ValueError, "k_range"),
    "k_range above the matrix rank": (dict(k_range=[1, 10_000]), ValueError, "k_range"),
    "k_range not integers": (dict(k_range=[1.5]), TypeError, "k_range"),
    "k_range not iterable": (dict(k_range=3), TypeError, "k_range"),
    "signal_mask masks everything": (dict(signal_mask="all"), ValueError, "signal_mask"),
    "navigation_mask masks everything": (
        dict(navigation_mask="all"),
        ValueError,
        "navigation_mask",
    ),
    "signal_mask of the wrong shape": (dict(signal_mask="wrong"), ValueError, "signal_mask"),
    "navigation_mask of the wrong shape": (
        dict(navigation_mask="wrong"),
        ValueError,
        "navigation_mask",
    ),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
@settings(max_examples=3)
@given(scan=scans(masks=False))
def test_bad_arguments_name_the_argument(scan, case):
    arguments, error, name = BAD_ARGUMENTS[case]
    options = {"k_range": K_RANGE, **SWEEP, "signal_mask": False, **arguments}
    shapes = {"signal_mask": scan.sig_shape, "navigation_mask": scan.nav_shape}
    for key, shape in shapes.items():
        if options.get(key) == "all":
            options[key] = np.ones(shape, bool)
        elif options.get(key) == "wrong":
            options[key] = np.zeros((shape[0] + 1, shape[1]), bool)
    with pytest.raises(error, match=name):
        scan.signal().nmf_sweep(**options)
