"""Tests of hyperspy_nmfdecide.iqa against published implementations and basic properties."""

import functools
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from hyperspy_nmfdecide import iqa

REFERENCE_FILE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "iqa_pairs.npz"


@functools.cache
def _load_pairs():
    with np.load(REFERENCE_FILE) as data:
        out = {key: data[key] for key in data.files}
    out["ref"] = out["reference"] / 255.0
    out["dist"] = out["distorted"] / 255.0
    return out


def reference_pairs():
    """The 40 reference pairs; called in each test body so that a missing file FAILS the test."""
    if not REFERENCE_FILE.is_file():
        pytest.fail(
            f"reference values not found at {REFERENCE_FILE}: the repository must be cloned next "
            "to shared/ (shared/reference/iqa_pairs.npz)",
            pytrace=False,
        )
    return _load_pairs()


def spot_pattern(size=64, seed=0):
    """A seeded diffraction-like image: a bright central beam and Gaussian spots on a lattice."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    c = (size - 1) / 2
    img = np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * 2.0**2))
    for i in range(-3, 4):
        for j in range(-3, 4):
            if i == j == 0:
                continue
            y, x = c + 8 * i + 2 * j, c + 8 * j - 2 * i
            if 2 < y < size - 3 and 2 < x < size - 3:
                amp = rng.uniform(0.2, 0.8)
                img += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.2**2))
    return img / img.max()


# ------------------------------------------------------------------------------------------------
# agreement with reference implementations
# ------------------------------------------------------------------------------------------------
def test_psnr_matches_skimage_reference():
    pairs = reference_pairs()
    got = np.array([iqa.psnr(r, d, data_range=1) for r, d in zip(pairs["ref"], pairs["dist"])])
    np.testing.assert_allclose(got, pairs["psnr_skimage"], rtol=0, atol=1e-6)


def test_ssim_matches_skimage_reference():
    pairs = reference_pairs()
    got = np.array([iqa.ssim(r, d, data_range=1) for r, d in zip(pairs["ref"], pairs["dist"])])
    np.testing.assert_allclose(got, pairs["ssim_skimage"], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "name, key, atol", [("gmsd", "gmsd_piq", 1e-3), ("mdsi", "mdsi_piq", 5e-3)]
)
def test_gradient_metrics_match_piq_reference(name, key, atol):
    pairs = reference_pairs()
    func = iqa.get_metric(name).func
    got = np.array([func(r, d, data_range=1) for r, d in zip(pairs["ref"], pairs["dist"])])
    assert spearmanr(got, pairs[key])[0] >= 0.99
    assert np.abs(got - pairs[key]).max() <= atol


def test_batch_on_reference_pairs():
    pairs = reference_pairs()
    got = iqa.batch("gmsd", pairs["ref"], pairs["dist"], data_range=1)
    assert np.abs(got - pairs["gmsd_piq"]).max() <= 1e-3
    got = iqa.batch("mdsi", pairs["ref"], pairs["dist"], data_range=1)
    assert np.abs(got - pairs["mdsi_piq"]).max() <= 5e-3


def test_mdsi_luminance_only_variant_is_close():
    pairs = reference_pairs()
    got = iqa.batch("mdsi", pairs["ref"], pairs["dist"], data_range=1, chromaticity="none")
    assert spearmanr(got, pairs["mdsi_piq"])[0] >= 0.99
    assert np.abs(got - pairs["mdsi_piq"]).max() <= 5e-3


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(iqa.METRICS))
def test_identical_images_give_perfect_score(name):
    img = spot_pattern()
    metric = iqa.get_metric(name)
    assert metric.func(img, img.copy(), data_range=1.0) == metric.perfect
    assert np.all(iqa.batch(name, img[None], img[None], data_range=1.0) == metric.perfect)


def test_perfect_values_and_directions():
    assert iqa.HIGHER_IS_BETTER == {
        "nsd": False,
        "psnr": True,
        "ssim": True,
        "gmsd": False,
        "mdsi": False,
    }
    assert iqa.get_metric("psnr").perfect == np.inf
    assert iqa.get_metric("ssim").perfect == 1.0
    assert iqa.get_metric("gmsd").perfect == 0.0
    assert iqa.get_metric("mdsi").perfect == 0.0


@pytest.mark.parametrize("name", sorted(iqa.METRICS))
def test_scores_worsen_with_noise(name):
    img = spot_pattern()
    noise = np.random.default_rng(1).standard_normal(img.shape)
    metric = iqa.get_metric(name)
    scores = [metric.func(img, img + s * noise, data_range=1.0) for s in (0.01, 0.03, 0.1, 0.3)]
    for better, worse in zip(scores[:-1], scores[1:]):
        assert metric.is_better(better, worse), scores


@pytest.mark.parametrize(
    "name, kw",
    [
        ("nsd", {}),
        ("psnr", {}),
        ("ssim", {}),
        ("gmsd", {}),
        ("gmsd", {"gradient": "sobel", "downsample": False}),
        ("mdsi", {}),
        ("mdsi", {"combination": "mult"}),
        ("mdsi", {"chromaticity": "none", "gradient": "sobel"}),
    ],
)
def test_batch_equals_loop(name, kw):
    rng = np.random.default_rng(2)
    refs = np.stack([spot_pattern(33, seed) for seed in range(6)]).reshape(2, 3, 33, 33)
    dist = refs + 0.05 * rng.standard_normal(refs.shape)
    got = iqa.batch(name, refs, dist, data_range=1.0, **kw)
    func = iqa.get_metric(name).func
    expected = np.array(
        [[func(refs[i, j], dist[i, j], data_range=1.0, **kw) for j in range(3)] for i in range(2)]
    )
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_batch_dask_matches_numpy():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(3)
    refs = rng.random((4, 5, 16, 16))
    dist = refs + 0.1 * rng.standard_normal(refs.shape)
    lazy_refs = da.from_array(refs, chunks=(2, 3, 8, 16))
    for name in ("gmsd", "ssim", "nsd"):
        lazy = iqa.batch(name, lazy_refs, da.from_array(dist, chunks=(3, 2, 16, 16)), data_range=1)
        assert isinstance(lazy, da.Array)
        np.testing.assert_allclose(lazy.compute(), iqa.batch(name, refs, dist, data_range=1))
    single = iqa.batch("mdsi", da.from_array(refs[0, 0]), dist[0, 0], data_range=1).compute()
    assert single == pytest.approx(iqa.mdsi(refs[0, 0], dist[0, 0], data_range=1))


def test_batch_accepts_callable():
    refs = np.random.default_rng(4).random((3, 8, 8))

    def mae(reference, distorted, *, data_range):
        return float(np.abs(reference - distorted).mean() / data_range)

    np.testing.assert_allclose(iqa.batch(mae, refs, refs + 0.5, data_range=2.0), [0.25] * 3)


def test_sobel_differs_from_prewitt():
    img = spot_pattern()
    dist = img + 0.05 * np.random.default_rng(5).standard_normal(img.shape)
    for func in (iqa.gmsd, iqa.mdsi):
        prewitt = func(img, dist, data_range=1.0)
        sobel = func(img, dist, data_range=1.0, gradient="sobel")
        assert abs(prewitt - sobel) > 1e-4
    assert iqa.gmsd(img, dist, data_range=1.0, downsample=False) != iqa.gmsd(
        img, dist, data_range=1.0
    )


def test_gmsd_odd_shape_and_data_range_invariance():
    img = spot_pattern(33)
    dist = img + 0.05 * np.random.default_rng(6).standard_normal(img.shape)
    a = iqa.gmsd(img, dist, data_range=1.0)
    b = iqa.gmsd(255 * img, 255 * dist, data_range=255.0)
    assert a == pytest.approx(b, rel=1e-10)
    assert iqa.mdsi(img, dist, data_range=1.0) == pytest.approx(
        iqa.mdsi(255 * img, 255 * dist, data_range=255.0), rel=1e-10
    )


def test_mdsi_pools_large_images():
    # round(400 / 256) = 2: 2 x 2 average pooling, must still give 0 for identical images
    img = np.tile(spot_pattern(), (7, 7))[:400, :420]
    assert iqa.mdsi(img, img, data_range=1.0) == 0.0
    assert iqa.mdsi(img, 0.9 * img, data_range=1.0) > 0.0


def test_nsd_population_std_and_mask():
    img = np.arange(12.0).reshape(3, 4)
    assert iqa.nsd(img) == pytest.approx(np.std(img, ddof=0))
    mask = np.zeros_like(img, dtype=bool)
    mask[0] = True
    assert iqa.nsd(img, mask=mask) == pytest.approx(np.std(img[1:]))
    refs = np.stack([img, 2 * img])
    got = iqa.batch("nsd", np.zeros_like(refs), refs, data_range=1.0, mask=mask)
    np.testing.assert_allclose(got, [np.std(img[1:]), 2 * np.std(img[1:])])


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------
PAIR_FUNCS = [iqa.psnr, iqa.ssim, iqa.gmsd, iqa.mdsi]


@pytest.mark.parametrize("func", PAIR_FUNCS)
def test_not_2d_raises(func):
    img = np.zeros((16, 16))
    with pytest.raises(ValueError, match="reference must be a 2-D array"):
        func(img[None], img[None], data_range=1.0)
    with pytest.raises(ValueError, match="distorted must be a 2-D array"):
        func(img, img[0], data_range=1.0)


def test_nsd_errors():
    with pytest.raises(ValueError, match="image must be a 2-D array"):
        iqa.nsd(np.zeros(5))
    with pytest.raises(ValueError, match="image contains NaN"):
        iqa.nsd(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="mask must have the image shape"):
        iqa.nsd(np.zeros((2, 2)), mask=np.zeros((3, 3), bool))
    with pytest.raises(TypeError, match="mask must be a boolean array"):
        iqa.nsd(np.zeros((2, 2)), mask=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="mask excludes every pixel"):
        iqa.nsd(np.zeros((2, 2)), mask=np.ones((2, 2), bool))


@pytest.mark.parametrize("func", PAIR_FUNCS)
def test_shape_mismatch_raises(func):
    with pytest.raises(ValueError, match="same shape"):
        func(np.zeros((16, 16)), np.zeros((16, 17)), data_range=1.0)


@pytest.mark.parametrize("func", PAIR_FUNCS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_raises(func, bad):
    img = np.zeros((16, 16))
    dist = img.copy()
    dist[3, 4] = bad
    with pytest.raises(ValueError, match="distorted contains NaN or infinite"):
        func(img, dist, data_range=1.0)
    with pytest.raises(ValueError, match="reference contains NaN or infinite"):
        func(dist, img, data_range=1.0)


@pytest.mark.parametrize("func", PAIR_FUNCS)
def test_data_range_checks(func):
    img = np.zeros((16, 16))
    with pytest.raises(TypeError, match="data_range"):
        func(img, img)
    with pytest.raises(TypeError, match="data_range"):
        func(img, img, data_range=None)
    for bad in (0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="data_range must be a positive"):
            func(img, img, data_range=bad)
    with pytest.raises(ValueError, match="data_range must be a positive"):
        iqa.batch(func, img[None], img[None], data_range=0)


@pytest.mark.parametrize("func", [iqa.gmsd, iqa.mdsi])
def test_unknown_gradient_raises(func):
    img = np.zeros((16, 16))
    with pytest.raises(ValueError, match="gradient must be one of"):
        func(img, img, data_range=1.0, gradient="scharr")
    with pytest.raises(ValueError, match="gradient must be one of"):
        iqa.gradient_magnitude(img, gradient="roberts")


def test_other_option_errors():
    img = np.zeros((16, 16))
    with pytest.raises(ValueError, match="combination must be"):
        iqa.mdsi(img, img, data_range=1.0, combination="max")
    with pytest.raises(ValueError, match="chromaticity must be"):
        iqa.mdsi(img, img, data_range=1.0, chromaticity="lab")
    with pytest.raises(TypeError, match="unexpected keyword"):
        iqa.batch("gmsd", img[None], img[None], data_range=1.0, sigma=2)


def test_unknown_metric_raises():
    with pytest.raises(ValueError, match=r"Unknown metric 'fsim'.*gmsd"):
        iqa.get_metric("fsim")
    with pytest.raises(ValueError, match="Unknown metric"):
        iqa.batch("vif", np.zeros((1, 8, 8)), np.zeros((1, 8, 8)), data_range=1.0)


def test_batch_shape_errors():
    with pytest.raises(ValueError, match="same shape"):
        iqa.batch("gmsd", np.zeros((2, 8, 8)), np.zeros((3, 8, 8)), data_range=1.0)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        iqa.batch("gmsd", np.zeros(8), np.zeros(8), data_range=1.0)
