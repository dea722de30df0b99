"""Small real files of three instruments (``../shared/realdata``, see its README): the command
and the Python workflow run on each without a traceback and keep the instrument's calibration.

Too few probes for a meaningful answer: these check readers, dtypes, files of several signals
and calibrations, not accuracy.  Skipped when the files are absent.
"""

import json
import warnings
from pathlib import Path

import pytest

from hyperspy_nmfdecide.cli import main

REALDATA = Path(__file__).parents[1].parent / "shared" / "realdata"

pytestmark = pytest.mark.skipif(
    not REALDATA.is_dir(), reason=f"the real data files are not at {REALDATA}"
)

#: File -> (probe rows, probe columns) of its 4D-STEM scan.
FILES = {
    "topspin_test_B.app5": (3, 7),
    "test1.blo": (3, 2),
    "001_4x2_6bit.mib": (2, 4),
    "002_4x2_6bit_roi128.mib": (2, 4),
}
FAST = ["--k", "1:3", "--restarts", "2", "--max-iter", "30", "--quiet"]


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Tiny problems: one BLAS thread is faster, above all on a busy machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _scan(name: str):
    """The 4D-STEM scan of a file, read as HyperSpy reads it (the 4-D one of a list)."""
    import hyperspy.api as hs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        read = hs.load(REALDATA / name, signal_type="nmf_decide")
    signals = read if isinstance(read, list) else [read]
    (scan,) = [s for s in signals if s.axes_manager.navigation_dimension == 2]
    return scan


def _calibration(axes) -> list[tuple]:
    return [(a.size, pytest.approx(a.scale), a.units) for a in axes]


@pytest.mark.parametrize("name", list(FILES))
def test_the_command_runs_on_each_file_and_keeps_its_calibration(name, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", str(REALDATA / name), *FAST, "--out", str(out)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    am = _scan(name).axes_manager
    expected = _calibration(am.navigation_axes + am.signal_axes)  # x first, as the report
    assert [(a["size"], a["scale"], a["units"]) for a in summary["data"]["axes"]] == expected
    assert summary["data"]["shape"][:2] == list(FILES[name])
    assert summary["decision"]["k"] in (1, 2, 3) and (out / "sweep.npz").is_file()


@pytest.mark.parametrize("name", list(FILES))
def test_the_python_workflow_runs_on_each_file_and_keeps_its_calibration(name):
    s = _scan(name)
    sweep = s.nmf_sweep(range(1, 4), n_restarts=2, max_iter=30, random_state=0)
    decision = s.decide_k()
    pm = s.phase_maps(decision.k)
    assert decision.k in (1, 2, 3) and decision.reason
    assert pm.label_array.shape == FILES[name]
    factors, loadings = sweep.get_factors(2), sweep.get_loadings(2)
    assert _calibration(factors.axes_manager.signal_axes) == _calibration(
        s.axes_manager.signal_axes
    )
    assert _calibration(loadings.axes_manager.signal_axes) == _calibration(
        s.axes_manager.navigation_axes
    )


def test_a_file_of_several_signals_takes_the_scan_or_the_one_asked_for(tmp_path, capsys):
    app5 = str(REALDATA / "topspin_test_B.app5")
    # The scan is signal 0; the navigator images (1 to 3) are no 4D-STEM scan.
    assert main(["analyze", app5, "--signal", "0", *FAST, "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main(["analyze", app5, "--signal", "1", "--out", str(tmp_path / "b")]) == 2
    assert "is not a 4D-STEM scan" in capsys.readouterr().err
    assert main(["analyze", app5, "--signal", "4", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "argument --signal: 4 is out of range" in err and "holds 4 signal(s)" in err


def test_navigation_shape_reshapes_a_merlin_scan_and_is_checked(tmp_path, capsys):
    mib = str(REALDATA / "001_4x2_6bit.mib")
    argv = ["analyze", mib, "--navigation-shape", "4", "2", *FAST, "--out", str(tmp_path / "a")]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["data"]["shape"][:2] == [4, 2]
    capsys.readouterr()
    # 9 probes of a file of 8 patterns: the reader would read fewer, silently.
    argv = ["analyze", mib, "--navigation-shape", "3", "3", "--out", str(tmp_path / "b")]
    assert main(argv) == 2
    assert "argument --navigation-shape: 3 x 3 probes (9 patterns) do not fit" in (
        capsys.readouterr().err
    )
    # A format that stores its scan shape takes none.
    blo = str(REALDATA / "test1.blo")
    argv = ["analyze", blo, "--navigation-shape", "2", "3", "--out", str(tmp_path / "c")]
    assert main(argv) == 2
    assert "argument --navigation-shape: the reader of .blo files" in capsys.readouterr().err
