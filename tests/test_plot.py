"""The figures of :mod:`hyperspy_nmfdecide.plot`, checked by what they draw (their artists).

Small seeded scans; the sweep, decision and phase maps are computed once per module.  The scan
is 6 × 8 probes, not square, so that a swapped x and y shows in the extents.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import QuadMesh  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from hyperspy_nmfdecide.plot import (  # noqa: E402
    plot_components,
    plot_data_overview,
    plot_decision,
    plot_phase_maps,
    plot_sweep,
    plot_true_labels,
    plot_true_sources,
)
from hyperspy_nmfdecide.plot._axes import (  # noqa: E402
    axis_label,
    image_aspect,
    image_extent,
    pixel_to_value,
    plain_units,
)

K_VALUES = [1, 2, 3, 4]
N_RESTARTS = 3


@pytest.fixture(scope="module")
def scan():
    from hyperspy_nmfdecide.data import simulated_scan

    return simulated_scan(nav_shape=(6, 8), pattern_size=32, n_crystals=2, random_state=0)


@pytest.fixture(scope="module")
def sweep(scan):
    return scan.signal.nmf_sweep(
        K_VALUES, n_restarts=N_RESTARTS, max_iter=30, random_state=0, show_progressbar=False
    )


@pytest.fixture(scope="module")
def decision(scan, sweep):
    return scan.signal.decide_k(sweep, n_sample=16, show_progressbar=False, store=False)


@pytest.fixture(scope="module")
def phase_maps(scan, sweep):
    return scan.signal.phase_maps(3, sweep=sweep, show_progressbar=False, store=False)


def _edges(axis):
    """Outer pixel edges of a HyperSpy axis, from its calibration."""
    return axis.offset - axis.scale / 2, axis.offset + axis.scale * (axis.size - 0.5)


def _calibrated_extent(x_axis, y_axis):
    (x0, x1), (y0, y1) = _edges(x_axis), _edges(y_axis)
    return [x0, x1, y1, y0]  # origin upper: the first row at the top


# -- the axes helper -----------------------------------------------------------------------------
def test_axes_helper_reads_hyperspy_axes_and_dicts_alike(scan):
    x_axis, y_axis = scan.signal.axes_manager.navigation_axes
    as_dicts = [a.get_axis_dictionary() for a in (x_axis, y_axis)]
    assert image_extent(x_axis, y_axis) == pytest.approx(_calibrated_extent(x_axis, y_axis))
    assert image_extent(*as_dicts) == pytest.approx(image_extent(x_axis, y_axis))
    assert axis_label(x_axis) == axis_label(as_dicts[0]) == "x (nm)"
    assert image_aspect(x_axis, y_axis) == "equal"
    kx, _ = scan.signal.axes_manager.signal_axes
    assert image_aspect(x_axis, kx) == "auto"  # nm against Å⁻¹: no true shape
    assert pixel_to_value(kx, 0) == kx.offset and pixel_to_value(kx, 1.5) == pytest.approx(
        kx.offset + 1.5 * kx.scale
    )
    assert plain_units(kx.units) == "Å⁻¹"


def test_axis_label_without_name_or_units():
    assert axis_label({"name": "<undefined>", "units": "<undefined>"}) == "pixels"
    assert axis_label({"name": "t", "units": None}) == "t"
    assert axis_label({"name": None, "units": "s"}) == "(s)"


# -- sweep ---------------------------------------------------------------------------------------
def test_plot_sweep_draws_every_run_and_the_curves(sweep):
    fig = plot_sweep(sweep)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["minimum MSE", "mean MSE", "NNDSVD start", "PCA (rank-k bound)"]
    minimum = ax.lines[0]
    np.testing.assert_array_equal(minimum.get_xdata(), K_VALUES)
    np.testing.assert_allclose(minimum.get_ydata(), sweep.best_loss)
    np.testing.assert_allclose(ax.lines[3].get_ydata(), sweep.pca_loss)
    # The frequency map: one column per k, its counts add up to the restarts of that k.
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    counts = np.ma.filled(mesh.get_array(), 0).reshape(-1, len(K_VALUES))
    np.testing.assert_array_equal(counts.sum(axis=0), [N_RESTARTS] * len(K_VALUES))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == labels
    assert ax.get_xlabel() == "number of components k" and ax.get_ylabel() == "MSE"
    assert f"{N_RESTARTS} restarts per k" in ax.get_title()
    assert fig.axes[1].get_ylabel() == "runs (frequency)"  # the colour bar


def test_plot_sweep_draws_into_given_axes(sweep):
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_sweep(sweep, ax=right) is fig
    assert not left.lines and len(right.lines) == 4


# -- decision ------------------------------------------------------------------------------------
def test_plot_decision_marks_the_decision_in_every_panel(decision):
    fig = plot_decision(decision)
    panels = fig.axes
    assert len(panels) == 4
    for ax in panels:
        marks = [line for line in ax.lines if line.get_label() == f"decision k = {decision.k}"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [decision.k] * 2
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert f"decision k = {decision.k}" in legend
    loss = panels[0]
    elbow = [line for line in loss.lines if line.get_label() == "elbow (level 1)"]
    assert list(elbow[0].get_xdata()) == [decision.elbow_k] * 2
    assert [ax.get_xlabel() for ax in panels] == ["", "", *["number of components k"] * 2]
    assert fig.get_suptitle() == f"decide_k ({decision.method}): k = {decision.k}"


def test_plot_decision_draws_into_given_figure(decision):
    fig = plt.figure()
    assert plot_decision(decision, fig=fig) is fig and len(fig.axes) == 4


# -- components ----------------------------------------------------------------------------------
def test_plot_components_patterns_over_maps_on_calibrated_axes(sweep):
    factors, loadings = sweep.get_factors(3), sweep.get_loadings(3)
    fig = plot_components(factors, loadings, max_columns=2, title="k = 3")
    # 2 columns: a block of 2 components and a block of 1 and an empty column; 3 colour bars.
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 6 and len(fig.axes) == 8 + 3
    off = [ax for ax in fig.axes if not ax.axison]
    assert len(off) == 2
    kx, ky = factors.axes_manager.signal_axes
    x_axis, y_axis = loadings.axes_manager.signal_axes
    # Blocks of two rows: the patterns in the first, their maps in the second.
    patterns = [ax for ax in images if ax.get_subplotspec().rowspan.start % 2 == 0]
    maps = [ax for ax in images if ax.get_subplotspec().rowspan.start % 2 == 1]
    for ax in patterns:
        assert list(ax.images[0].get_extent()) == pytest.approx(_calibrated_extent(kx, ky))
        assert ax.get_xlabel() == "kx ($\\AA^{-1}$)"
    for ax in maps:
        assert list(ax.images[0].get_extent()) == pytest.approx(_calibrated_extent(x_axis, y_axis))
        assert ax.get_xlabel() == "x (nm)"
    assert patterns[0].get_ylabel() == "ky ($\\AA^{-1}$)" and patterns[1].get_ylabel() == ""
    shares = [ax.get_title() for ax in patterns]
    assert [s.split()[0] for s in shares] == ["#1", "#2", "#3"] and shares[0].endswith("%)")
    assert fig.get_suptitle() == "k = 3"


def test_plot_components_labels_and_scaling(sweep):
    factors, loadings = sweep.get_factors(2), sweep.get_loadings(2)
    fig = plot_components(factors, loadings, labels=["a", "b"], scaling="sqrt")
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["a", "b"]
    assert type(fig.axes[0].images[0].norm).__name__ == "PowerNorm"
    with pytest.raises(ValueError, match="scaling must be"):
        plot_components(factors, loadings, scaling="cube")


# -- data overview -------------------------------------------------------------------------------
def _overview_inputs(scan):
    import hyperspy.api as hs

    s = scan.signal
    mean = s.mean(axis=s.axes_manager.navigation_axes)
    rois = [hs.roi.CircleROI(0.0, 0.0, 0.1), hs.roi.CircleROI(0.0, 0.0, 0.6, r_inner=0.2)]
    return mean, s.get_virtual_image(rois), rois


def test_plot_data_overview_detectors_mask_and_extents(scan, sweep):
    mean, virtual, rois = _overview_inputs(scan)
    fig = plot_data_overview(mean, virtual, rois, sweep.signal_mask)
    pattern_ax, bf_ax, adf_ax = fig.axes[:3]
    circles = [p for p in pattern_ax.patches if isinstance(p, Circle)]
    assert sorted(c.get_radius() for c in circles) == pytest.approx([0.1, 0.2, 0.6])
    contours = [c for c in pattern_ax.collections if isinstance(c, ContourSet)]
    assert len(contours) == 1 and list(contours[0].levels) == [0.5]  # the mask's outline
    kx, ky = scan.signal.axes_manager.signal_axes
    x_axis, y_axis = scan.signal.axes_manager.navigation_axes
    assert list(pattern_ax.images[0].get_extent()) == pytest.approx(_calibrated_extent(kx, ky))
    for ax in (bf_ax, adf_ax):
        assert list(ax.images[0].get_extent()) == pytest.approx(_calibrated_extent(x_axis, y_axis))
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (nm)", "y (nm)")
    assert pattern_ax.get_xlabel() == "kx ($\\AA^{-1}$)"
    assert [ax.get_title() for ax in (bf_ax, adf_ax)] == [
        "virtual bright field",
        "virtual annular dark field",
    ]
    assert len(fig.axes) == 6  # three images, three colour bars


def test_plot_data_overview_without_mask_draws_no_contour(scan):
    mean, virtual, rois = _overview_inputs(scan)
    fig = plot_data_overview(mean, virtual, rois)
    assert not [c for c in fig.axes[0].collections if isinstance(c, ContourSet)]


# -- phase maps ----------------------------------------------------------------------------------
def test_plot_phase_maps_legend_and_extents(scan, phase_maps):
    pm = phase_maps
    fig = plot_phase_maps(pm)
    labels_ax, rgb_ax = fig.axes[:2]
    legend = [t.get_text() for t in labels_ax.get_legend().get_texts()]
    assert len(legend) == pm.n_phases + 1 and legend[-1] == "0: no phase"
    for text, (label, members) in zip(legend, pm.legend.items()):
        assert text.startswith(f"{label}: C{members[0]}")
    x_axis, y_axis = scan.signal.axes_manager.navigation_axes
    for ax in (labels_ax, rgb_ax):
        assert list(ax.images[0].get_extent()) == pytest.approx(_calibrated_extent(x_axis, y_axis))
        assert ax.get_xlabel() == "x (nm)"
    assert labels_ax.get_ylabel() == "y (nm)" and rgb_ax.get_ylabel() == ""
    assert len(fig.axes) == 2 + 2 * pm.n_phases
    assert fig.axes[2].get_title().startswith("phase 1 (")
    assert "SSIM" in fig.axes[3].get_title()


def test_plot_phase_maps_max_phases(phase_maps):
    fig = plot_phase_maps(phase_maps, max_phases=1)
    assert len(fig.axes) == 4


# -- ground truth --------------------------------------------------------------------------------
def test_plot_true_labels_names_the_crystals(scan):
    x_axis, y_axis = scan.signal.axes_manager.navigation_axes
    fig = plot_true_labels(scan.labels, scan.label_sets, scan.source_names, x_axis, y_axis)
    ax, colour_bar = fig.axes
    assert list(ax.images[0].get_extent()) == pytest.approx(_calibrated_extent(x_axis, y_axis))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x (nm)", "y (nm)")
    ticks = [t.get_text() for t in colour_bar.get_yticklabels()]
    present = np.unique(scan.labels)
    assert len(ticks) == len(present)
    if 0 in present:
        assert ticks[0] == "none"
    assert all(set(t.split("+")) <= {"c1", "c2"} for t in ticks if t != "none")
    assert colour_bar.get_ylabel() == "crystals present"


def test_plot_true_labels_in_pixels_without_axes(scan):
    fig, ax = plt.subplots()
    assert plot_true_labels(scan.labels, scan.label_sets, scan.source_names, ax=ax) is fig
    ny, nx = scan.labels.shape
    assert list(ax.images[0].get_extent()) == [-0.5, nx - 0.5, ny - 0.5, -0.5]
    assert ax.get_xlabel() == "pixels"


def test_plot_true_sources_one_column_per_source(scan):
    am = scan.signal.axes_manager
    fig = plot_true_sources(
        scan.sources,
        scan.weights,
        scan.source_names,
        pattern_axes=am.signal_axes,
        scan_axes=am.navigation_axes,
        true_k=scan.true_k,
    )
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == list(scan.source_names)
    maps = [ax for ax in fig.axes if ax.images and ax.get_xlabel() == "x (nm)"]
    assert len(maps) == len(scan.source_names)
    assert list(maps[0].images[0].get_extent()) == pytest.approx(
        _calibrated_extent(*am.navigation_axes)
    )
    assert fig.get_suptitle() == (
        f"Ground truth: {len(scan.source_names)} sources, true k = {scan.true_k}"
    )
