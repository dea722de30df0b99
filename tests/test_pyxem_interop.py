"""pyxem's methods return on our class what they return on pyxem's own class.

Two checks.  (1) For every pyxem method that makes a new signal, the class of the result on
``NMFDecideDiffraction2D`` is the class it has on pyxem's ``ElectronDiffraction2D`` (or our
twin of that class, when pyxem keeps the parent's ``signal_type``: a profile of our scan is
our ``NMFDecideDiffraction1D``, a subclass of pyxem's ``ElectronDiffraction1D``).  (2) pyxem's
own shipped tests of ``ElectronDiffraction2D``/``ElectronDiffraction1D`` pass with our classes
substituted for pyxem's, wherever they pass on pyxem's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import hyperspy.api as hs
import numpy as np
import pytest
import pyxem
from pyxem.signals import (
    ElectronDiffraction1D,
    ElectronDiffraction2D,
    LazyElectronDiffraction1D,
    LazyElectronDiffraction2D,
)

from hyperspy_nmfdecide.data import simulated_scan
from hyperspy_nmfdecide.signals import LazyNMFDecideDiffraction2D, NMFDecideDiffraction2D
from hyperspy_nmfdecide.signals1d import LazyNMFDecideDiffraction1D, NMFDecideDiffraction1D

# pyxem's class → ours.  A result whose pyxem class is not here (BeamShift, PolarDiffraction2D,
# VirtualDarkFieldImage, Signal2D...) must have exactly pyxem's class on ours too.
OUR_TWIN = {
    ElectronDiffraction2D: NMFDecideDiffraction2D,
    LazyElectronDiffraction2D: LazyNMFDecideDiffraction2D,
    ElectronDiffraction1D: NMFDecideDiffraction1D,
    LazyElectronDiffraction1D: LazyNMFDecideDiffraction1D,
}


def _roi():
    # Calibrated units: the simulated scan's diffraction axes run from -1 to 1 Å⁻¹.
    return hs.roi.CircleROI(cx=0.0, cy=0.0, r=0.3, r_inner=0.1)


# Every pyxem (or HyperSpy) method a user calls on a scan that returns a new signal, above all
# those that change the signal dimension, so that HyperSpy picks the result's class anew.
METHODS = {
    "get_azimuthal_integral1d": lambda s: s.get_azimuthal_integral1d(npt=8),
    "azimuthal_integral1d_summed": lambda s: s.get_azimuthal_integral1d(npt=8).sum(axis=(0, 1)),
    "azimuthal_integral1d_inav": lambda s: s.get_azimuthal_integral1d(npt=8).inav[0, 0],
    "get_azimuthal_integral2d": lambda s: s.get_azimuthal_integral2d(npt=8),
    "get_variance": lambda s: s.get_variance(npt=8),
    "get_variance_spatial": lambda s: s.get_variance(npt=8, spatial=True),
    "get_direct_beam_position_com": lambda s: s.get_direct_beam_position(method="center_of_mass"),
    "get_direct_beam_position_blur": lambda s: s.get_direct_beam_position(
        method="blur", sigma=1, half_square_width=10
    ),
    "center_direct_beam": lambda s: s.center_direct_beam(
        method="blur", sigma=1, half_square_width=10, inplace=False
    ),
    "get_virtual_image": lambda s: s.get_virtual_image(_roi()),
    "get_virtual_images": lambda s: s.get_virtual_image([_roi(), _roi()]),
    "get_integrated_intensity": lambda s: s.get_integrated_intensity(_roi()),
    "find_peaks": lambda s: s.find_peaks(interactive=False, method="local_max", threshold_abs=10),
    "template_match_disk": lambda s: s.template_match_disk(disk_r=2),
    "template_match_ring": lambda s: s.template_match_ring(r_inner=2, r_outer=3),
    "subtract_diffraction_background": lambda s: s.subtract_diffraction_background(
        "difference of gaussians", min_sigma=1, max_sigma=3
    ),
    "filter": lambda s: s.filter(lambda x: x),
    "flip_diffraction_x": lambda s: s.flip_diffraction_x(),
    "shift_diffraction": lambda s: s.shift_diffraction(1, 1, inplace=False),
    "find_hot_pixels": lambda s: s.find_hot_pixels(),
    "get_direct_beam_mask": lambda s: s.get_direct_beam_mask(2),
    "sum_over_navigation": lambda s: s.sum(axis=(0, 1)),
    "sum_over_signal": lambda s: s.sum(axis=(2, 3)),
    "sum_over_one_signal_axis": lambda s: s.sum(axis=3),
    "as_signal1D": lambda s: s.as_signal1D(0),
    "transpose": lambda s: s.T,
    "rebin": lambda s: s.rebin(scale=(1, 1, 2, 2)),
    "decomposition_factors": lambda s: (
        s.decomposition(output_dimension=2, print_info=False),
        s.get_decomposition_factors(),
    )[1],
    "decomposition_loadings": lambda s: (
        s.decomposition(output_dimension=2, print_info=False),
        s.get_decomposition_loadings(),
    )[1],
}


@pytest.fixture(scope="module")
def scans():
    """The same small seeded scan as our class and as pyxem's own class."""
    ours = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0).signal
    theirs = ours.deepcopy()
    theirs.set_signal_type(ElectronDiffraction2D._signal_type)
    assert type(ours) is NMFDecideDiffraction2D and type(theirs) is ElectronDiffraction2D
    return ours, theirs


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("method", METHODS)
def test_pyxem_method_returns_pyxem_class(scans, method, lazy):
    ours, theirs = (s.as_lazy() if lazy else s.deepcopy() for s in scans)
    expected = type(METHODS[method](theirs))
    result = METHODS[method](ours)
    assert type(result) is OUR_TWIN.get(expected, expected)
    assert isinstance(result, expected)
    # The scan is not turned into something else by the method.
    assert type(ours) is (LazyNMFDecideDiffraction2D if lazy else NMFDecideDiffraction2D)


def test_profile_is_pyxem_profile_and_survives_save_and_load(scans, tmp_path):
    profile = scans[0].get_azimuthal_integral1d(npt=8)
    assert isinstance(profile, ElectronDiffraction1D)
    # pyxem's 1-D methods work on it: the calibration setters of ElectronDiffraction1D.
    profile.beam_energy = 200.0
    assert profile.metadata.Acquisition_instrument.TEM.beam_energy == 200.0
    profile.save(tmp_path / "profile.hspy")
    assert type(hs.load(tmp_path / "profile.hspy")) is NMFDecideDiffraction1D
    assert type(hs.load(tmp_path / "profile.hspy", lazy=True)) is LazyNMFDecideDiffraction1D
    np.testing.assert_array_equal(hs.load(tmp_path / "profile.hspy").data, profile.data)


# --- pyxem's own tests, run on our classes ----------------------------------------------------

PYXEM_TESTS = Path(pyxem.__file__).parent
PYXEM_TEST_FILES = [
    "tests/signals/test_electron_diffraction2d.py",
    "tests/signals/test_lazy_electron_diffraction2d.py",
    "tests/signals/test_electron_diffraction1d.py",
    "tests/signals/test_lazy_electron_diffraction1d.py",
]

# A pytest plugin, loaded with -p before pyxem's conftest and test modules are imported, so
# that their ``from pyxem.signals import ElectronDiffraction2D`` binds our class.
_SUBSTITUTE_PLUGIN = textwrap.dedent(
    """
    import pyxem.signals
    from hyperspy_nmfdecide.signals import LazyNMFDecideDiffraction2D, NMFDecideDiffraction2D
    from hyperspy_nmfdecide.signals1d import LazyNMFDecideDiffraction1D, NMFDecideDiffraction1D

    pyxem.signals.ElectronDiffraction2D = NMFDecideDiffraction2D
    pyxem.signals.LazyElectronDiffraction2D = LazyNMFDecideDiffraction2D
    pyxem.signals.ElectronDiffraction1D = NMFDecideDiffraction1D
    pyxem.signals.LazyElectronDiffraction1D = LazyNMFDecideDiffraction1D


    def pytest_configure(config):
        with open("substituted.txt", "w") as file:
            file.write(pyxem.signals.ElectronDiffraction2D.__name__)
    """
)


def _run_pyxem_tests(tmp_path: Path, name: str, substitute: bool) -> tuple[set[str], str]:
    """Run pyxem's tests in a fresh interpreter; return the ids that passed and the output."""
    run_dir = tmp_path / name
    run_dir.mkdir()
    # An empty ini file and rootdir: pyxem's tests run with pytest's defaults, not this
    # project's addopts (doctests, strict markers) or filterwarnings.
    (run_dir / "pytest.ini").write_text("[pytest]\n")
    env = dict(os.environ, MPLBACKEND="Agg")
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-c", "pytest.ini", "--rootdir", str(PYXEM_TESTS), "--junitxml", "report.xml"]
    if substitute:
        (run_dir / "_nmfdecide_substitute.py").write_text(_SUBSTITUTE_PLUGIN)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(run_dir), env.get("PYTHONPATH")]))
        command += ["-p", "_nmfdecide_substitute"]
    command += [str(PYXEM_TESTS / path) for path in PYXEM_TEST_FILES]
    done = subprocess.run(command, cwd=run_dir, env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert (run_dir / "report.xml").is_file(), output
    passed = set()
    for case in ET.parse(run_dir / "report.xml").iter("testcase"):
        if not any(child.tag in ("failure", "error", "skipped") for child in case):
            passed.add(f"{case.get('classname')}::{case.get('name')}")
    print(f"{name}: {len(passed)} passed", output.splitlines()[-1])
    return passed, output


@pytest.mark.slow
def test_pyxem_own_tests_pass_on_our_classes(tmp_path):
    """Every pyxem test of ElectronDiffraction2D/1D that passes on pyxem's class passes on ours.

    About 30 s: four of pyxem's test files, run once as shipped and once with our classes.
    """
    if not (PYXEM_TESTS / PYXEM_TEST_FILES[0]).is_file():
        pytest.skip("this pyxem installation does not ship its tests")
    on_pyxem, _ = _run_pyxem_tests(tmp_path, "pyxem", substitute=False)
    on_ours, output = _run_pyxem_tests(tmp_path, "ours", substitute=True)
    assert (tmp_path / "ours" / "substituted.txt").read_text() == "NMFDecideDiffraction2D"
    # A collection error would pass vacuously: pyxem 0.21 has 50 passing tests in these files.
    assert len(on_pyxem) >= 40, sorted(on_pyxem)
    assert sorted(on_pyxem - on_ours) == [], output
