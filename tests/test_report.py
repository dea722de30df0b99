"""The HTML report: the builder (escaping, tables, files, summary.json) and every section.

Small seeded scans; the sweep, decision and phase maps are computed once per module.
"""

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hyperspy_nmfdecide import report as report_module  # noqa: E402
from hyperspy_nmfdecide.report import (  # noqa: E402
    Report,
    decision_section,
    phase_section,
    preprocessing_section,
    slugify,
    sweep_section,
    truth_section,
)


@pytest.fixture(scope="module")
def scan():
    from hyperspy_nmfdecide.data import simulated_scan

    return simulated_scan(nav_shape=(8, 8), pattern_size=32, n_crystals=2, random_state=0)


@pytest.fixture(scope="module")
def sweep(scan):
    return scan.signal.nmf_sweep(
        range(1, 5), n_restarts=2, max_iter=30, random_state=0, show_progressbar=False
    )


@pytest.fixture(scope="module")
def decision(scan, sweep):
    return scan.signal.decide_k(sweep, n_sample=16, show_progressbar=False, store=False)


@pytest.fixture(scope="module")
def phase_maps(scan, sweep):
    return scan.signal.phase_maps(3, sweep=sweep, show_progressbar=False, store=False)


def _titles(report):
    return [(s.title, s.level) for s in report.sections]


# -- the builder ---------------------------------------------------------------------------------
def test_report_escapes_and_tables(tmp_path, check_report_html):
    import matplotlib.pyplot as plt

    report = Report(tmp_path, "A <b>bold</b> & title")
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    report.add_section(
        "<script>alert(1)</script>",
        text="x < y & z\n\nsecond paragraph",
        figures=[("a <figure>", fig)],
        table={"name": ["<i>", "b"], "value": [1.5, np.nan]},
    )
    report.add_section("<script>alert(1)</script>", table=[{"a": 1}, {"b": True}], level=3)
    report.summary["numbers"] = np.arange(3)
    path = report.write()
    html = path.read_text()
    assert "<script>" not in html and "<b>bold" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html and "x &lt; y &amp; z" in html and "&lt;i&gt;" in html
    assert html.count("<p>") >= 2 and html.count("<table>") == 2
    assert not plt.fignum_exists(fig.number)  # closed after saving
    assert (tmp_path / "script-alert-1-script-a-figure.png").is_file()
    assert 'id="script-alert-1-script-2"' in html  # duplicate titles get unique anchors
    parser = check_report_html(tmp_path)
    assert parser.sources == ["script-alert-1-script-a-figure.png"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["numbers"] == [0, 1, 2]
    assert summary["report"]["sections"][0]["figures"] == parser.sources


def test_report_rejects_ragged_table(tmp_path):
    with pytest.raises(ValueError, match="different lengths"):
        Report(tmp_path, "t").add_section("s", table={"a": [1, 2], "b": [1]})


def test_summary_is_strict_json(tmp_path):
    report = Report(tmp_path, "t")
    report.summary["x"] = {"inf": np.float64("inf"), "nan": float("nan"), "path": tmp_path}
    report.write()
    text = (tmp_path / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["x"] == {"inf": None, "nan": None, "path": str(tmp_path)}


def test_slugify():
    assert slugify("k = 3") == "k-3"


# -- sections ------------------------------------------------------------------------------------
def test_sweep_section(scan, sweep, tmp_path, check_report_html):
    report = Report(tmp_path, "Sweep")
    sweep_section(report, scan.signal, sweep, show_k=[2, 3], timings={"sweep": 1.5})
    assert _titles(report) == [
        ("Data", 2),
        ("Preprocessing", 2),
        ("NMF sweep", 2),
        ("Sweep parameters", 2),
        ("Components", 2),
        ("k = 2", 3),
        ("k = 3", 3),
    ]
    data = report.summary["data"]
    assert data["shape"] == [8, 8, 32, 32] and data["lazy"] is False
    detectors = data["virtual_detectors"]
    assert detectors["units"] == "Å⁻¹"  # plain text, not HyperSpy's mathtext
    assert 0 < detectors["bf_radius"] < detectors["adf_inner"] < detectors["adf_outer"]
    assert [row["units"] for row in report.sections[0].table] == ["nm", "nm", "Å⁻¹", "Å⁻¹"]
    assert [row["k"] for row in report.sections[2].table] == [1, 2, 3, 4]
    parameters = {row["parameter"]: row["value"] for row in report.sections[3].table}
    assert parameters["k values"] == "1–4" and parameters["wall time: sweep"] == "1.5 s"
    assert set(report.summary["sweep"]["figures"]["components"]) == {"2", "3"}
    assert report.summary["timings"] == {"sweep": 1.5}
    _ = report.write()
    check_report_html(tmp_path)


def test_sweep_section_default_and_unknown_show_k(scan, sweep, tmp_path, monkeypatch):
    monkeypatch.setattr(report_module, "MAX_SHOW_K", 2)
    report = Report(tmp_path, "Sweep")
    sweep_section(report, scan.signal, sweep)
    assert set(report.summary["sweep"]["figures"]["components"]) == {"1", "2"}
    with pytest.raises(ValueError, match=r"show_k \[7\] not in the sweep"):
        sweep_section(Report(tmp_path, "Sweep"), scan.signal, sweep, show_k=[7])


def test_preprocessing_section_lists_the_steps(scan, tmp_path):
    prepared = scan.signal.prepare_for_nmf(binning=2, show_progressbar=False)
    report = Report(tmp_path, "Preprocessing")
    preprocessing_section(report, prepared)
    (row,) = report.sections[0].table
    assert row["step"] == "binning" and "factor = 2" in row["parameters"]
    assert row["what it does"].startswith("patterns summed")


def test_decision_section(decision, tmp_path):
    report = Report(tmp_path, "Decision")
    decision_section(report, decision, note="look again")
    (section,) = report.sections
    assert section.paragraphs[0].startswith(f"Decision: k = {decision.k} ({decision.method}")
    assert section.paragraphs[-1] == "Note: look again"
    marks = {row["k"]: row["mark"] for row in section.table}
    assert "decided" in marks[decision.k] and "elbow" in marks[decision.elbow_k]
    last = section.table[-1]
    assert last["SSIM k vs k+1"] is None  # no k + 1 at the last k: NaN shows as a dash
    summary = report.summary["decision"]
    assert summary["k"] == decision.k and summary["note"] == "look again"
    assert summary["figures"]["decision_plot"] == section.files[0]


def test_decision_section_note_from_the_suggested_range(decision, tmp_path):
    import dataclasses

    outside = dataclasses.replace(decision, suggested_range=(3, 9))
    report = Report(tmp_path, "Decision")
    decision_section(report, outside)
    note = report.summary["decision"]["note"]
    assert note.startswith("The sweep's k range does not bracket the decision: sweep k = 3..9")
    assert report.sections[0].paragraphs[-1] == f"Note: {note}"


def test_phase_section(phase_maps, tmp_path):
    pm = phase_maps
    report = Report(tmp_path, "Phases")
    phase_section(report, pm)
    assert _titles(report) == [
        ("Phase maps", 2),
        ("Component tracking", 3),
        ("Raw vs reconstructed", 3),
    ]
    legend = report.sections[0].table
    assert [row["phase"] for row in legend] == [*pm.legend, 0]
    assert sum(row["probes"] for row in legend) <= pm.label_array.size
    tracking = report.sections[1]
    assert "k = 2 and 4" in tracking.paragraphs[0]
    assert [row["component"] for row in tracking.table] == [f"C{i}" for i in range(pm.k)]
    assert len(report.sections[2].table) == pm.n_phases
    figures = report.summary["phase_maps"]["figures"]
    assert figures == {"phase_maps_plot": report.sections[0].files[0]}


def test_truth_section_compares_with_the_decision_and_the_phases(
    scan, decision, phase_maps, tmp_path
):
    report = Report(tmp_path, "Truth")
    truth_section(report, scan, decision=decision, pm=phase_maps)
    (section,) = report.sections
    assert section.files == [
        "ground-truth-of-the-simulation-sources.png",
        "ground-truth-of-the-simulation-labels.png",
    ]
    assert [row["source"] for row in section.table] == ["crystal 1", "crystal 2"]
    truth = report.summary["ground_truth"]
    assert truth["true_k"] == scan.true_k and truth["decided_k"] == decision.k
    assert truth["decided_k_correct"] is (decision.k == scan.true_k)
    assert -1 <= truth["phase_map_ari"] <= 1
    assert any(p.startswith("Phase labels at k = 3 against") for p in section.paragraphs)


def test_truth_section_alone(scan, tmp_path):
    report = Report(tmp_path, "Truth")
    truth_section(report, scan)
    truth = report.summary["ground_truth"]
    assert "decided_k" not in truth and "phase_map_ari" not in truth
    assert truth["source_names"] == ["background", "crystal 1", "crystal 2"]
