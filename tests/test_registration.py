"""The signal classes are registered with HyperSpy and survive everything a user does."""

import hyperspy.api as hs
import numpy as np
import pytest
from pyxem.signals import ElectronDiffraction2D, LazyElectronDiffraction2D

from hyperspy_nmfdecide.signals import LazyNMFDecideDiffraction2D, NMFDecideDiffraction2D


@pytest.fixture
def signal():
    data = np.random.default_rng(0).poisson(3.0, (4, 5, 16, 16)).astype(np.float32)
    s = hs.signals.Signal2D(data)
    s.set_signal_type("nmf_decide")
    return s


def test_set_signal_type_gives_our_class(signal):
    assert type(signal) is NMFDecideDiffraction2D
    assert isinstance(signal, ElectronDiffraction2D)


def test_alias_and_known_types():
    s = hs.signals.Signal2D(np.zeros((2, 2, 8, 8)))
    s.set_signal_type("nmfdecide")
    assert type(s) is NMFDecideDiffraction2D


def test_lazy_twin_and_round_trips(signal):
    lazy = signal.as_lazy()
    assert type(lazy) is LazyNMFDecideDiffraction2D
    assert isinstance(lazy, LazyElectronDiffraction2D)
    lazy.compute()
    assert type(lazy) is NMFDecideDiffraction2D
    assert type(signal.deepcopy()) is NMFDecideDiffraction2D
    assert type(signal.inav[1:3, 0:2]) is NMFDecideDiffraction2D
    assert type(signal.as_lazy().inav[0:2]) is LazyNMFDecideDiffraction2D


@pytest.mark.parametrize("extension", ["hspy", "zspy"])
def test_save_and_load_keep_the_class(signal, extension, tmp_path):
    path = tmp_path / f"scan.{extension}"
    signal.save(path)
    assert type(hs.load(path)) is NMFDecideDiffraction2D
    assert type(hs.load(path, lazy=True)) is LazyNMFDecideDiffraction2D
    plain = hs.signals.Signal2D(signal.data)
    plain.save(tmp_path / f"plain.{extension}")
    loaded = hs.load(tmp_path / f"plain.{extension}", signal_type="nmf_decide")
    assert type(loaded) is NMFDecideDiffraction2D


def test_pyxem_methods_still_work(signal):
    centre = signal.get_direct_beam_position(method="center_of_mass")
    assert centre.data.shape[:2] == (4, 5)
    assert signal.get_azimuthal_integral1d(npt=8, inplace=False).data.shape[-1] == 8


def test_top_level_yaml_is_the_package_yaml():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    top = root / "hyperspy_extension.yaml"
    package = root / "hyperspy_nmfdecide" / "hyperspy_extension.yaml"
    assert top.read_text() == package.read_text()


@pytest.mark.parametrize("lazy", [False, True])
def test_one_dimensional_twins_are_registered(lazy):
    # pyxem's profiles of our scans keep signal_type "nmf_decide" (tests/test_pyxem_interop.py).
    from hyperspy.io import assign_signal_subclass
    from pyxem.signals import ElectronDiffraction1D

    from hyperspy_nmfdecide.signals1d import LazyNMFDecideDiffraction1D, NMFDecideDiffraction1D

    expected = LazyNMFDecideDiffraction1D if lazy else NMFDecideDiffraction1D
    for signal_type in ("nmf_decide", "nmfdecide"):
        found = assign_signal_subclass(np.dtype("float32"), 1, signal_type, lazy)
        assert found is expected
        assert issubclass(found, ElectronDiffraction1D)
