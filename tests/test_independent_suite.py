"""The independent benchmark suite (benchmarks/independent.py): its ground truth fits its data."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def independent():
    """``benchmarks/independent.py`` (the benchmarks directory is not a package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "independent.py"
    spec = importlib.util.spec_from_file_location("independent_suite", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_crystal_stem_truth_reproduces_make_4d_stem(independent, monkeypatch):
    # With Poisson noise switched off, make_4d_stem's data are the expected values plus the
    # uniform noise in [0, noise_level): the truth (offset mean noise_level / 2) is within
    # noise_level / 2 of every pixel of every probe.
    from orix.quaternion import Rotation

    monkeypatch.setattr(np.random, "poisson", lambda lam: lam)
    zones = Rotation.from_euler([[0, 0, 0], [0, 45, 0], [0, 54.7, 45]], degrees=True)
    scan = independent.crystal_stem_scan(
        phase="fe_fcc",
        num_crystals=2,
        crystal_size=5,
        real_space_pixels=24,
        recip_space_pixels=32,
        dose=500.0,
        gain=2.0,
        noise=0.5,
        seed=3,
        rotations=zones,  # three zone axes: fast, where pyxem's ~1100 take seconds
    )
    level = scan.params["noise_level"]
    data = scan.signal.data
    assert np.abs(data - scan.noise_free()).max() <= level / 2 + 1e-3 * data.max()
    vacuum = scan.labels == 0
    assert vacuum.any() and (data[vacuum] < level).all()  # the offset alone
    assert scan.background_index == 0 and scan.true_k == 3
    for source in (1, 2):
        # Where a crystal is alone its brightest spot off the beam holds its counts.
        alone = scan.labels == next(k for k, v in scan.label_sets.items() if v == (source,))
        spots = scan.sources[source] * ~scan.beam_mask
        brightest = np.unravel_index(np.argmax(spots), spots.shape)
        assert (data[alone][:, brightest[0], brightest[1]] > level).all()


def test_grain_truth_matches_counts(independent):
    scan = independent.grain_scan(
        "fe_multi_phase_grains", num_grains=2, size=12, recip_pixels=64, dose=1e6, seed=11
    )
    assert scan.true_k == len(scan.sources) == scan.params["grains_present"]
    assert scan.background_index is None and not scan.overlap.any() and (scan.labels > 0).all()
    data = scan.signal.data.reshape(144, -1)
    expected = scan.noise_free().reshape(144, -1)
    assert np.allclose(data.sum(axis=1), expected.sum(axis=1), rtol=0.01)
    correlation = [np.corrcoef(d, e)[0, 1] for d, e in zip(data, expected)]
    assert min(correlation) > 0.999
    beam = np.unravel_index(np.argmax(data.mean(axis=0)), scan.beam_mask.shape)
    assert scan.beam_mask[beam]  # the brightest pixel is the direct beam's
