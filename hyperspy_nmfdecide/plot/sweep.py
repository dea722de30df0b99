"""The NMF sweep figure: every run's MSE against k (Uesugi et al. 2021, Figs. 4a and 5).

Examples
--------
>>> import matplotlib.pyplot as plt
>>> from hyperspy_nmfdecide.data import simulated_scan
>>> s = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, random_state=0).signal
>>> sweep = s.nmf_sweep(range(1, 4), n_restarts=2, random_state=0, show_progressbar=False)
>>> fig = plot_sweep(sweep)
>>> [line.get_label() for line in fig.axes[0].lines]
['minimum MSE', 'mean MSE', 'NNDSVD start', 'PCA (rank-k bound)']
>>> plt.close(fig)
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ._axes import get_axes

__all__ = ["plot_sweep"]


class _Sweep(Protocol):
    """What :func:`plot_sweep` reads of a sweep (``NMFSweep`` has it)."""

    k_values: np.ndarray
    loss: np.ndarray
    best_loss: np.ndarray
    mean_loss: np.ndarray
    pca_loss: np.ndarray
    nndsvd_loss: np.ndarray
    params: dict


def plot_sweep(sweep: _Sweep, ax=None, *, bins: int = 40):
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
    fig, ax = get_axes(ax)
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
