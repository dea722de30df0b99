"""Figures: each function takes ``ax=None`` or ``fig=None`` and returns the Figure (DESIGN §6).

One module per family of figures: :mod:`.sweep` (MSE against k), :mod:`.decision` (the
evidence for k), :mod:`.components` (factors and loading maps), :mod:`.phasemaps`,
:mod:`.orientation` (crystals and IPF colours), :mod:`.overview` (mean pattern and virtual
images) and :mod:`.truth` (a simulation's ground truth).  Every image on calibrated axes goes
through one helper, :mod:`._axes`.  pyplot is imported only when a figure is drawn.

Examples
--------
>>> from hyperspy_nmfdecide.plot import plot_decision, plot_sweep
>>> callable(plot_sweep) and callable(plot_decision)
True
"""

from .components import plot_components
from .decision import plot_decision
from .orientation import plot_orientation_maps
from .overview import plot_data_overview
from .phasemaps import plot_phase_maps
from .sweep import plot_sweep
from .truth import plot_true_labels, plot_true_sources

__all__ = [
    "plot_components",
    "plot_data_overview",
    "plot_decision",
    "plot_orientation_maps",
    "plot_phase_maps",
    "plot_sweep",
    "plot_true_labels",
    "plot_true_sources",
]
