"""Figures for papers: each function takes ``ax=None`` and returns the Figure (DESIGN §6)."""

from __future__ import annotations

import numpy as np


def _axes(ax, figsize=(6.0, 4.0)):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def plot_sweep(sweep, ax=None, *, bins: int = 40):
    """MSE of every run against k as a frequency map, with min, mean, NNDSVD and PCA lines.

    Uesugi et al. (2021) Fig. 4a (grey squares: how many restarts ended in each MSE bin; blue:
    minimum; red dashed: mean) and Fig. 5 (the PCA MSE, the rank-k lower bound) in one plot.

    Parameters
    ----------
    sweep : NMFSweep
        The result of ``nmf_sweep``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.
    bins : int
        MSE bins of the frequency map (log-spaced when the MSE spans a decade or more).

    Returns
    -------
    matplotlib.figure.Figure
        Its axes hold the lines in the order: minimum, mean, NNDSVD, PCA.
    """
    fig, ax = _axes(ax)
    k = sweep.k_values
    loss = sweep.loss
    everything = np.concatenate([loss.ravel(), sweep.pca_loss, sweep.nndsvd_loss])
    low, high = float(everything.min()), float(everything.max())
    logarithmic = low > 0 and high / low >= 10
    if logarithmic:
        edges = np.geomspace(low, high * 1.0001, bins + 1)
    else:
        edges = np.linspace(low, high + 1e-12 * max(abs(high), 1), bins + 1)
    counts = np.stack([np.histogram(row, bins=edges)[0] for row in loss], axis=1)
    k_edges = np.concatenate([k - 0.5, [k[-1] + 0.5]])
    mesh = ax.pcolormesh(
        k_edges,
        edges,
        np.ma.masked_equal(counts, 0),
        cmap="Greys",
        vmin=0,
        vmax=max(int(counts.max()), 1),
        shading="flat",
    )
    fig.colorbar(mesh, ax=ax, label="runs (frequency)")
    ax.plot(k, sweep.best_loss, "-o", color="tab:blue", ms=3, label="minimum MSE")
    ax.plot(k, sweep.mean_loss, "--", color="tab:red", label="mean MSE")
    ax.plot(k, sweep.nndsvd_loss, "x", color="tab:green", label="NNDSVD start")
    ax.plot(k, sweep.pca_loss, ":", color="black", label="PCA (rank-k bound)")
    if logarithmic:
        ax.set_yscale("log")
    ax.set_xlabel("number of components k")
    ax.set_ylabel("MSE")
    ax.set_xticks(k)
    solver = sweep.params.get("solver", "")
    ax.set_title(f"NMF sweep ({solver}, {loss.shape[1]} restarts per k)")
    ax.legend(frameon=False, fontsize="small")
    return fig


def plot_decision(decision, fig=None):
    """The k decision: level 1 (MSE and its elbow) and level 2 (noise edge, IQA, agreement).

    Four panels sharing k: (a) minimum MSE per k with the elbow; (b) each component's squared
    singular value of the noise-scaled data over the noise edge, with the margin line;
    (c) SSIM raw vs reconstructed and reconstruction k vs k + 1; (d) residual NSD over the
    measured noise level and the share of restarts reaching the minimum.  The decided k is a
    vertical line in every panel.

    Parameters
    ----------
    decision : KDecision
        The result of ``decide_k``.
    fig : matplotlib.figure.Figure, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if fig is None:
        fig = plt.figure(figsize=(9.0, 6.5), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    k = np.asarray(decision.k_values)
    c = decision.columns
    (loss_ax, noise_ax), (iqa_ax, residual_ax) = axes

    loss_ax.plot(k, c["best_mse"], "-o", ms=3, color="tab:blue", label="minimum MSE")
    loss_ax.plot(k, c["mean_mse"], "--", color="tab:red", label="mean MSE")
    loss_ax.axvline(decision.elbow_k, color="tab:orange", ls=":", label="elbow (level 1)")
    loss_ax.set_yscale("log")
    loss_ax.set_ylabel("MSE")
    loss_ax.set_title("(a) level 1: loss")

    ratio = decision.noise_ratio
    ranks = np.arange(1, ratio.size + 1)
    noise_ax.plot(ranks, ratio, "-o", ms=3, color="black", label="component / noise edge")
    margin = decision.params["margin"]
    noise_ax.axhline(margin, color="tab:gray", ls="--", label=f"margin {margin:.3g}×")
    noise_ax.set_yscale("log")
    noise_ax.set_ylabel("σ² / noise edge")
    noise_ax.set_title("(b) level 2: components above the noise")

    iqa_ax.plot(k, c["ssim"], "-o", ms=3, color="tab:green", label="SSIM raw vs model")
    iqa_ax.plot(k, c["next_ssim"], "--s", ms=3, color="tab:purple", label="SSIM model k vs k+1")
    iqa_ax.set_ylabel("SSIM")
    iqa_ax.set_title("(c) level 2: image quality")

    residual_ax.plot(
        k,
        c["residual_nsd_ratio"],
        "-o",
        ms=3,
        color="tab:brown",
        label="residual NSD / noise",
    )
    residual_ax.plot(
        k, c["restart_agreement"], "--", color="tab:cyan", label="restarts at the minimum"
    )
    residual_ax.plot(
        k, c["component_agreement"], ":", color="tab:olive", label="2 best runs' components alike"
    )
    residual_ax.axhline(1.0, color="tab:gray", lw=0.8)
    residual_ax.set_title("(d) residual and restarts")

    for ax in axes.ravel():
        ax.axvline(
            decision.k, color="tab:red", lw=1.5, alpha=0.6, label=f"decision k = {decision.k}"
        )
        ax.legend(frameon=False, fontsize="x-small")
    for ax in axes[1]:
        ax.set_xlabel("number of components k")
    fig.suptitle(f"decide_k ({decision.method}): k = {decision.k}")
    return fig
