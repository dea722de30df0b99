"""The ``nmfdecide`` command (small, fast end-to-end runs); the report's sections are in
``test_report.py``."""

import json
import os
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hyperspy_nmfdecide.cli import _parse_k, _threshold, build_parser, main  # noqa: E402
from hyperspy_nmfdecide.results import NMFSweep  # noqa: E402

FAST = ["--restarts", "2", "--max-iter", "30", "--quiet"]


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """These problems are tiny: one BLAS thread is faster, above all on a busy machine."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    from hyperspy_nmfdecide.data import simulated_scan

    path = tmp_path_factory.mktemp("data") / "scan.hspy"
    scan = simulated_scan(nav_shape=(10, 10), pattern_size=32, random_state=0)
    scan.signal.save(path)
    return path


# -- demo ----------------------------------------------------------------------------------------
def test_demo_tiny_writes_report(tmp_path, capsys, check_report_html):
    out = tmp_path / "report"
    argv = ["demo", "--size", "tiny", "--restarts", "2", "--k", "2:5", "--out", str(out)]
    assert main(argv + ["--quiet", "--max-iter", "50", "--show-k", "3,4"]) == 0
    stdout = capsys.readouterr().out
    assert str(out.resolve() / "index.html") in stdout
    assert "Decision (noise): k = 4" in stdout and "decided k = 4" in stdout
    parser = check_report_html(out, figures=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sweep"]["k"] == [2, 3, 4, 5]
    assert set(summary["sweep"]["figures"]["components"]) == {"3", "4"}
    for name in summary["sweep"]["figures"]["components"].values():
        assert name in parser.sources
    assert summary["sweep"]["params"]["n_restarts"] == 2
    assert summary["sweep"]["params"]["solver"] == "hals"
    assert summary["data"]["shape"] == [12, 12, 32, 32]
    assert summary["data"]["lazy"] is False
    assert summary["timings"]["sweep"] > 0
    assert summary["ground_truth"]["true_k"] == 4  # background + 3 crystals
    html = (out / "index.html").read_text()
    assert "Ground truth" in html and "Sweep parameters" in html
    # The demo, like every sweep, masks the direct beam it finds by default (no preprocessing).
    assert "detector pixels excluded" in html and "automatic: direct beam at" in html
    assert summary["preprocessing"] == []
    assert summary["sweep"]["params"]["signal_mask"]["source"] == "automatic"
    # The decision and the phase maps at the decided k, with their figures.
    decision, phases = summary["decision"], summary["phase_maps"]
    assert decision["k"] == 4 and decision["method"] == "noise" and decision["reason"]
    assert [row["k"] for row in decision["table"]] == [2, 3, 4, 5]
    assert phases["k"] == 4 and phases["background_index"] is not None
    assert phases["legend"] and phases["comparison"]
    for name in (decision["figures"]["decision_plot"], phases["figures"]["phase_maps_plot"]):
        assert name in parser.sources and (out / name).is_file()
    assert "Number of components" in html and "Phase maps" in html
    assert "Component tracking" in html and "Raw vs reconstructed" in html
    truth = summary["ground_truth"]
    assert truth["decided_k"] == 4 and truth["decided_k_correct"] is True
    assert 0.5 < truth["phase_map_ari"] <= 1
    assert summary["timings"]["decide_k"] > 0 and "skipped" not in summary


# -- analyze -------------------------------------------------------------------------------------
def test_analyze_hspy(scan_file, tmp_path, capsys, check_report_html):
    out = tmp_path / "out"
    argv = ["analyze", str(scan_file), "--k", "2:3", "--out", str(out), "--seed", "1"]
    assert main(argv + FAST + ["--show-k", "3"]) == 0
    assert "sweep.npz" in capsys.readouterr().out
    check_report_html(out, figures=True)
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["sweep"]["figures"]["components"]) == ["3"]
    assert summary["files"]["sweep"] == "sweep.npz"
    sweep = NMFSweep.load(out / "sweep.npz")
    np.testing.assert_allclose(sweep.best_loss, summary["sweep"]["best_mse"], rtol=1e-6)
    assert sweep.k_values.tolist() == [2, 3] and sweep.params["random_state"] == "1"
    # Two values of k: too few to decide; the sweep report is written with a note.
    assert "decision" not in summary and "phase_maps" not in summary
    assert "at least 3 values of k" in summary["skipped"]["decision"]
    html = (out / "index.html").read_text()
    assert "at least 3 values of k" in html
    # No preprocessing option: nothing recorded, and the report says so.
    assert summary["preprocessing"] == []
    assert "<h2>Preprocessing</h2>\n<p>none (raw data): " in html


def test_analyze_method_elbow_and_threshold(scan_file, tmp_path, capsys, check_report_html):
    out = tmp_path / "out"
    argv = ["analyze", str(scan_file), "--k", "2:5", "--out", str(out), "--show-k", "2"]
    assert main(argv + FAST + ["--method", "elbow", "--threshold", "0.3"]) == 0
    assert "Decision (elbow): k = " in capsys.readouterr().out
    check_report_html(out, figures=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["decision"]["method"] == "elbow"
    assert summary["decision"]["k"] == summary["decision"]["elbow_k"]
    assert summary["phase_maps"]["k"] == summary["decision"]["k"]
    assert summary["phase_maps"]["params"]["threshold"] == 0.3


def test_analyze_no_phases(scan_file, tmp_path):
    out = tmp_path / "out"
    argv = ["analyze", str(scan_file), "--k", "2:5", "--out", str(out), "--show-k", "2"]
    assert main(argv + FAST + ["--no-phases"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "decision" in summary and "phase_maps" not in summary
    assert summary["skipped"] == {"phase_maps": "--no-phases"}
    titles = [s["title"] for s in summary["report"]["sections"]]
    assert "Number of components" in titles and "Phase maps" not in titles


def _cif_files(directory: Path, scan_file: Path) -> list[Path]:
    """CIF files of the scan's crystal phases, written with diffpy from the built-in phases."""
    import hyperspy.api as hs

    from hyperspy_nmfdecide.data import crystal_phase

    crystals = json.loads(hs.load(scan_file).metadata.Simulation.parameters)["crystals"]
    names = sorted({c["phase"] for c in crystals})
    paths = []
    for name in names:
        path = directory / f"{name}.cif"
        crystal_phase(name).structure.write(str(path), "cif")
        paths.append(path)
    return paths


def test_analyze_phases_adds_orientations(scan_file, tmp_path, check_report_html):
    from orix import io

    out = tmp_path / "out"
    cifs = _cif_files(tmp_path, scan_file)
    argv = ["analyze", str(scan_file), "--k", "3:5", "--out", str(out), "--show-k", "3"]
    assert main(argv + FAST + ["--phases", *map(str, cifs)]) == 0
    check_report_html(out, figures=True)
    summary = json.loads((out / "summary.json").read_text())
    found = summary["orientations"]
    assert len(found["table"]) == summary["phase_maps"]["k"]
    assert {row["phase"] for row in found["table"]} <= {p.stem for p in cifs}
    assert (out / found["figure"]).is_file() and summary["timings"]["index_components"] > 0
    xmap = io.load(out / found["crystal_map"])
    assert xmap.shape == (10, 10)
    assert "<h2>Orientations</h2>" in (out / "index.html").read_text()


def test_analyze_bad_phases_fail_before_the_sweep(scan_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["analyze", str(scan_file), "--out", str(out), "--phases", str(tmp_path / "no.cif")]
    assert main(argv + FAST) == 2
    assert "argument --phases: phases[0]: no CIF file at" in capsys.readouterr().err
    assert not (out / "sweep.npz").exists()


def test_analyze_bracket_warning_is_a_note(scan_file, tmp_path, capsys):
    # The true k is 4: a sweep over 1..3 does not bracket it.  (The beam is kept: masked, on
    # this 10 x 10 scan the background's last component sinks into the noise.)
    out = tmp_path / "out"
    argv = ["analyze", str(scan_file), "--k", "1:3", "--out", str(out), "--show-k", "1"]
    argv += ["--beam-mask", "0"]
    assert main(argv + FAST + ["--no-phases"]) == 0
    err = capsys.readouterr().err
    assert "nmfdecide: warning: The sweep's k range (1..3) does not bracket" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["decision"]["suggested_range"] is not None
    assert "does not bracket" in summary["decision"]["note"]
    html = (out / "index.html").read_text()
    assert "Note: The sweep&#x27;s k range (1..3) does not bracket" in html


def test_k_range_warning_is_caught_by_its_class(capsys):
    import warnings

    from hyperspy_nmfdecide.cli import _decide_k
    from hyperspy_nmfdecide.decide import KRangeWarning

    class Scan:  # stands for the signal: only what _decide_k calls
        def decide_k(self, sweep, **kwargs):
            warnings.warn("any words at all", KRangeWarning)
            warnings.warn("someone else's", UserWarning)
            return "decision"

    args = build_parser().parse_args(["demo", "--quiet"])
    with pytest.warns(UserWarning, match="someone else's"):  # passed on, not swallowed
        decision, note = _decide_k(Scan(), None, args)
    assert (decision, note) == ("decision", "any words at all")
    assert capsys.readouterr().err == "nmfdecide: warning: any words at all\n"


def test_choices_are_the_librarys():
    from hyperspy_nmfdecide.decide import METHODS
    from hyperspy_nmfdecide.nmf.sweep import MODES, SOLVERS

    parser = build_parser()
    for method in METHODS:
        assert parser.parse_args(["demo", "--method", method]).method == method
    for solver in SOLVERS:
        assert parser.parse_args(["demo", "--solver", solver]).solver == solver
    for mode in MODES:
        assert parser.parse_args(["demo", "--mode", mode]).mode == mode


def test_analyze_beam_radius_masks_the_beam(scan_file, tmp_path):
    # --beam-radius: the former name of --beam-mask.
    out = tmp_path / "out"
    argv = ["analyze", str(scan_file), "--k", "2", "--out", str(out), "--beam-radius", "3"]
    assert main(argv + FAST) == 0
    sweep = NMFSweep.load(out / "sweep.npz")
    assert sweep.signal_mask is not None and 20 < sweep.signal_mask.sum() < 40
    assert "detector pixels excluded" in (out / "index.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert [step["step"] for step in summary["preprocessing"]] == ["beam_mask"]


def test_analyze_epattern_sweeps_the_spots_and_checkpoint_resumes(scan_file, tmp_path):
    out, checkpoint = tmp_path / "out", tmp_path / "ckpt"
    argv = ["analyze", str(scan_file), "--k", "1:3", "--out", str(out), "--beam-mask", "3"]
    argv += ["--epattern", "--checkpoint", str(checkpoint), "--no-phases"]
    assert main(argv + FAST) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [step["step"] for step in summary["preprocessing"]] == ["beam_mask", "epattern"]
    assert summary["preprocessing"][1]["compression_ratio"] > 1
    assert (checkpoint / "manifest.json").is_file()
    first = NMFSweep.load(out / "sweep.npz")
    assert first.params["input"] == "spots (sparse)"
    # The same command again reads the finished checkpoint: the identical sweep.
    assert main(argv + FAST) == 0
    np.testing.assert_array_equal(NMFSweep.load(out / "sweep.npz").loss, first.loss)


def test_analyze_preprocessing_steps_in_report(scan_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["analyze", str(scan_file), "--k", "2", "--out", str(out)]
    prepare = ["--beam-mask", "3", "--binning", "2", "--center"]  # applied in a fixed order
    assert main(argv + FAST + prepare) == 0
    assert "warning" not in capsys.readouterr().err  # the noise method is not affected
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["preprocessing"]
    assert [step["step"] for step in steps] == ["center", "binning", "beam_mask"]
    assert steps[0]["method"] == "blur" and len(steps[0]["mean_shift_px"]) == 2
    assert steps[1]["factor"] == 2 and steps[1]["pattern_shape"] == [16, 16]
    assert steps[2]["radius_px"] == 3.0
    # The sweep ran on the prepared scan, with the recorded beam mask.
    assert summary["data"]["signal_shape"] == [16, 16]
    sweep = NMFSweep.load(out / "sweep.npz")
    assert sweep.signal_mask.shape == (16, 16)
    assert sweep.signal_mask.sum() == steps[2]["n_masked_pixels"] > 0
    assert summary["timings"]["preprocessing"] > 0
    html = (out / "index.html").read_text()
    assert "in this order: center → binning → beam_mask." in html
    assert (
        html.index(">Data</h2>") < html.index(">Preprocessing</h2>") < html.index(">NMF sweep</h2>")
    )
    assert "factor = 2; pattern_shape = [16, 16]" in html


def test_analyze_bad_binning_is_a_clean_error(scan_file, tmp_path, capsys):
    argv = ["analyze", str(scan_file), "--binning", "3", "--out", str(tmp_path / "out")]
    assert main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "nmfdecide: error: preprocessing: binning=3 does not divide the pattern shape "
        "(32, 32) (ky, kx)\n"
    )
    assert not (tmp_path / "out").exists()  # checked before any work


def test_noise_method_warns_after_scaling(capsys):
    from hyperspy_nmfdecide.cli import _prepare

    class Scan:  # stands for the signal: only what _prepare calls
        def prepare_for_nmf(self, **kwargs):
            return kwargs

    args = build_parser().parse_args(["demo", "--scaling", "sqrt", "--blur", "1", "--quiet"])
    prepared, seconds = _prepare(Scan(), args, beam_radius=2.0)
    assert prepared == {
        "blur_sigma": 1.0,
        "scaling": "sqrt",
        "beam_mask_radius": 2.0,
        "show_progressbar": False,
    }
    assert seconds >= 0
    err = capsys.readouterr().err
    assert "warning: --method noise measures the noise" in err and "--blur, --scaling" in err
    args = build_parser().parse_args(["demo", "--scaling", "sqrt", "--method", "elbow"])
    _prepare(Scan(), args, beam_radius=None)
    assert capsys.readouterr().err == ""


def test_analyze_zspy_lazy(scan_file, tmp_path, check_report_html):
    import hyperspy.api as hs

    zspy = tmp_path / "scan.zspy"
    hs.load(scan_file).save(zspy)
    out = tmp_path / "lazy"
    assert main(["analyze", str(zspy), "--lazy", "--k", "2", "--out", str(out)] + FAST) == 0
    check_report_html(out, figures=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["lazy"] is True and summary["sweep"]["params"]["lazy"] is True
    eager = hs.load(scan_file, signal_type="nmf_decide").nmf_sweep(
        [2], n_restarts=2, max_iter=30, random_state=0, show_progressbar=False
    )
    np.testing.assert_allclose(
        NMFSweep.load(out / "sweep.npz").best_loss, eager.best_loss, rtol=1e-4
    )


def test_analyze_on_a_cluster_matches_the_eager_sweep(scan_file, tmp_path):
    import hyperspy.api as hs

    distributed = pytest.importorskip("distributed")
    zspy = tmp_path / "scan.zspy"
    hs.load(scan_file).save(zspy, chunks=(5, 10, 32, 32))
    out = tmp_path / "cluster"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
    ) as cluster:
        argv = ["analyze", str(zspy), "--scheduler", cluster.scheduler_address, "--k", "2"]
        assert main(argv + ["--out", str(out)] + FAST) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["data"]["lazy"] is True
    eager = hs.load(scan_file, signal_type="nmf_decide").nmf_sweep(
        [2], n_restarts=2, max_iter=30, random_state=0, show_progressbar=False
    )
    np.testing.assert_allclose(
        NMFSweep.load(out / "sweep.npz").best_loss, eager.best_loss, rtol=1e-4
    )


def test_analyze_unreachable_scheduler_is_a_clean_error(scan_file, tmp_path, capsys):
    pytest.importorskip("distributed")
    argv = ["analyze", str(scan_file), "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "could not connect to the scheduler at tcp://127.0.0.1:1" in err
    assert "Traceback" not in err


def test_scheduler_without_distributed_installed_is_a_clean_error(
    scan_file, tmp_path, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    argv = ["analyze", str(scan_file), "--scheduler", "tcp://127.0.0.1:1", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--scheduler needs the 'distributed' package" in err
    assert "Traceback" not in err


def test_analyze_missing_file(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nothing.hspy")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nmfdecide: error: no such file")
    assert "Traceback" not in err


def test_analyze_not_4d(tmp_path, capsys):
    import hyperspy.api as hs

    path = tmp_path / "spectrum.hspy"
    hs.signals.Signal1D(np.arange(10.0)).save(path)
    assert main(["analyze", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "nmfdecide: error:" in err and "not a 4D-STEM scan" in err
    assert len(err.strip().splitlines()) == 1


def test_library_error_is_one_line(scan_file, tmp_path, capsys):
    # --beam-mask larger than the pattern: prepare_for_nmf's ValueError, shown cleanly.
    argv = ["analyze", str(scan_file), "--beam-mask", "500", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"nmfdecide: error: preprocessing: beam_mask_radius=500 px is too large for the "
        r"prepared pattern .*\n",
        err,
    )


# -- argument parsing ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [("2:15", list(range(2, 16))), ("2,3,5", [2, 3, 5]), ("4", [4]), ("5,1:2,5", [1, 2, 5])],
)
def test_parse_k(text, expected):
    assert _parse_k(text) == expected


@pytest.mark.parametrize("bad", ["", "a:b", "2-5", "5:2", "0:3", "2:3:4", "1.5"])
def test_bad_k_is_an_argparse_error(bad, capsys):
    assert main(["demo", "--k", bad]) == 2
    err = capsys.readouterr().err
    assert "argument --k" in err


@pytest.mark.parametrize("bad", ["0", "1", "-0.2", "1.5", "nan", "otsu2", ""])
def test_bad_threshold_is_an_argparse_error(bad, capsys):
    assert main(["demo", "--threshold", bad]) == 2
    assert "argument --threshold" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad, option",
    [
        (["--binning", "0"], "--binning"),
        (["--binning", "2.5"], "--binning"),
        (["--blur", "0"], "--blur"),
        (["--blur", "nan"], "--blur"),
        (["--scaling", "cube"], "--scaling"),
        (["--background", "h-dome"], "--background"),
        (["--center-method", "guess"], "--center-method"),
        (["--beam-mask", "-1"], "--beam-mask"),
        (["--background-radius", "5"], "--background-radius"),  # without --background
        (["--background", "median-kernel", "--background-radius", "5"], "--background-radius"),
    ],
)
def test_bad_preprocessing_option_is_an_argparse_error(bad, option, capsys):
    assert main(["demo", *bad]) == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err


def test_preprocessing_option_spellings():
    from hyperspy_nmfdecide.cli import _prepare_kwargs

    args = build_parser().parse_args(
        [
            "demo",
            "--background",
            "Median_Kernel",
            "--scaling",
            "LOG",
            "--center-method",
            "interpolate",
        ]
    )
    assert args.background == "median-kernel"
    kwargs = _prepare_kwargs(args, beam_radius=0)
    assert kwargs == {
        "center": {"method": "interpolate"},
        "background": "median kernel",
        "scaling": "log",
    }
    args = build_parser().parse_args(["analyze", "x.hspy", "--binning", "1"])
    assert _prepare_kwargs(args, beam_radius=args.beam_mask) == {}  # nothing to prepare


def test_threshold_values():
    assert _threshold("otsu") == "otsu" and _threshold("OTSU-level") == "otsu-level"
    assert _threshold("0.25") == 0.25


def test_help_and_bad_choice(capsys):
    assert main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["demo", "--solver", "svd"]) == 2
    assert "--solver" in capsys.readouterr().err
    assert main(["analyze", "x.hspy", "--method", "aic"]) == 2
    assert "--method" in capsys.readouterr().err
    assert main([]) == 2
    capsys.readouterr()
    assert main(["demo", "--k", "2:4", "--show-k", "5"]) == 2  # checked before any work
    assert "argument --show-k: [5] not among the fitted --k" in capsys.readouterr().err


# -- output paths and bad input: one line, before any work (issue 13) ----------------------------
def _one_error_line(err: str, *needles: str) -> None:
    """``err`` has one ``nmfdecide: error:`` line holding every one of ``needles``.

    Usage lines, and warnings and notes printed on the way, are not errors.
    """
    lines = [
        line
        for line in err.strip().splitlines()
        if not line.startswith(("usage:", " ")) and not re.match(r"\S+: (warning|note):", line)
    ]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "nmfdecide" in lines[0] and "error:" in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the command reads its input (the output checks come first)."""
    import hyperspy_nmfdecide.cli as cli

    def refuse(*args, **kwargs):
        raise AssertionError("the input was read before the output paths were checked")

    monkeypatch.setattr(cli, "_read", refuse)
    monkeypatch.setattr(cli, "_run_sweep", refuse)


@pytest.mark.parametrize("command", ["analyze", "demo"])
def test_out_an_existing_file_is_refused_before_any_work(
    scan_file, tmp_path, capsys, no_work, command
):
    existing = tmp_path / "report.html"
    existing.write_text("keep me")
    argv = [command] + ([str(scan_file)] if command == "analyze" else []) + ["--out", str(existing)]
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, "argument --out", str(existing), "existing file")
    assert existing.read_text() == "keep me"


@pytest.mark.parametrize("option", ["--out", "--checkpoint"])
def test_output_under_a_file_is_refused_before_any_work(
    scan_file, tmp_path, capsys, no_work, option
):
    # A path under a file cannot be made, even by root (who may write anywhere else).
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    target = blocker / "sub" / "report"
    argv = ["analyze", str(scan_file), "--out", str(tmp_path / "out"), option, str(target)]
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, f"argument {option}", str(target), "is a file")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes to any directory, whatever its permissions",
)
def test_out_in_an_unwritable_directory_is_refused(scan_file, tmp_path, capsys, no_work):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        for out in (locked, locked / "report"):
            assert main(["analyze", str(scan_file), "--out", str(out)]) == 2
            _one_error_line(capsys.readouterr().err, "argument --out", "not writable")
    finally:
        locked.chmod(0o700)


def test_a_report_that_cannot_be_written_is_one_line_and_the_sweep_kept(
    scan_file, tmp_path, capsys, monkeypatch
):
    from hyperspy_nmfdecide.report import Report

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out" / "index.html"))

    monkeypatch.setattr(Report, "write", full_disk)
    out = tmp_path / "out"
    argv = ["analyze", str(scan_file), "--k", "1:3", "--out", str(out), *FAST]
    assert main(argv) == 2
    err = capsys.readouterr().err
    _one_error_line(err, "could not write the report", "No space left on device", "sweep.npz")
    assert NMFSweep.load(out / "sweep.npz").k_values.tolist() == [1, 2, 3]


def test_an_os_error_anywhere_is_one_line(scan_file, tmp_path, capsys, monkeypatch):
    import hyperspy_nmfdecide.cli as cli

    def broken(*args, **kwargs):
        raise PermissionError(13, "Permission denied", "/somewhere/file")

    monkeypatch.setattr(cli, "_prepare", broken)
    assert main(["analyze", str(scan_file), "--out", str(tmp_path / "out")]) == 2
    _one_error_line(capsys.readouterr().err, "Permission denied: /somewhere/file")


@pytest.mark.parametrize("content", [b"just some text\n", b"abc", b""])
@pytest.mark.parametrize("suffix", [".hspy", ".zspy", ".blo", ".mib", ""])
def test_a_file_that_is_no_data_is_one_line(tmp_path, capsys, content, suffix):
    path = tmp_path / f"notes{suffix}"
    path.write_bytes(content)
    assert main(["analyze", str(path), "--out", str(tmp_path / "out")]) == 2
    _one_error_line(capsys.readouterr().err, f"could not read {path}")


def test_a_directory_as_input_is_one_line(tmp_path, capsys):
    assert main(["analyze", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    _one_error_line(capsys.readouterr().err, "is a directory", "FILE")


def test_a_signal_type_without_sweep_names_the_option(scan_file, tmp_path, capsys):
    argv = ["analyze", str(scan_file), "--signal-type", "bogus", "--out", str(tmp_path)]
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, "argument --signal-type", "nmf_decide")


def test_a_k_above_the_rank_names_the_option(scan_file, tmp_path, capsys):
    argv = ["analyze", str(scan_file), "--k", "101:102", "--out", str(tmp_path / "out"), *FAST]
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, "argument --k", "k can be at most 100")


@pytest.mark.parametrize(
    "bad, option",
    [
        (["--restarts", "0"], "--restarts"),
        (["--max-iter", "0"], "--max-iter"),
        (["--tol", "-1"], "--tol"),
        (["--tol", "abc"], "--tol"),
        (["--seed", "-1"], "--seed"),
        (["--show-k", "abc"], "--show-k"),
        (["--signal", "-1"], "--signal"),
        (["--navigation-shape", "0", "2"], "--navigation-shape"),
        (["--navigation-shape", "2"], "--navigation-shape"),
        (["--k", "abc"], "--k"),
        (["--k", "0"], "--k"),
    ],
)
def test_bad_option_values_name_the_option(bad, option, capsys):
    assert main(["analyze", "x.hspy", *bad]) == 2
    err = capsys.readouterr().err
    assert f"argument {option}" in err and "Traceback" not in err
