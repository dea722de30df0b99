"""The figure of the decision of k: level 1 (the MSE and its elbow) and level 2 (the noise edge,
image quality, the residual and the restarts), Cao et al.'s two levels.

Examples
--------
>>> import matplotlib.pyplot as plt
>>> from hyperspy_nmfdecide.data import simulated_scan
>>> s = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, dose=5000,
...                    random_state=0).signal
>>> _ = s.nmf_sweep(range(1, 4), n_restarts=2, random_state=0, show_progressbar=False)
>>> fig = plot_decision(s.decide_k(n_sample=16, show_progressbar=False))
>>> len(fig.axes)
4
>>> plt.close(fig)
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ._axes import get_figure

__all__ = ["plot_decision"]


class _Decision(Protocol):
    """What :func:`plot_decision` reads of a decision (``KDecision`` has it)."""

    k: int
    elbow_k: int
    method: str
    k_values: np.ndarray
    columns: dict
    noise_ratio: np.ndarray
    params: dict


def plot_decision(decision: _Decision, fig=None):
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
    fig = get_figure(fig, figsize=(9.0, 6.5))
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
