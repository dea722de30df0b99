"""The calibrated HyperSpy signal of a simulated scan: axes, signal type and metadata."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .crystals import BEAM_ENERGY, _wavelength

if TYPE_CHECKING:
    from ..signals import LazyNMFDecideDiffraction2D, NMFDecideDiffraction2D

__all__ = ["_calibrated_signal"]


def _calibrated_signal(
    data,
    *,
    lazy: bool,
    scale: float,
    probe_step: float,
    spot_sigma: float,
    detector: dict | None,
    true_k: int,
    params: dict,
) -> NMFDecideDiffraction2D | LazyNMFDecideDiffraction2D:
    """The ``nmf_decide`` signal of ``data``: calibrated axes and the simulation's metadata."""
    import hyperspy.api as hs

    import hyperspy_nmfdecide.signals  # noqa: F401  (registers the signal type)

    ny, nx, size = data.shape[:3]
    offset = -(size / 2) * scale  # k = 0 at pixel size / 2, the detector centre
    k_units = r"$\AA^{-1}$"  # pyxem's spelling of Å^-1
    axes = [
        _axis("y", ny, probe_step, 0.0, "nm", navigate=True),
        _axis("x", nx, probe_step, 0.0, "nm", navigate=True),
        _axis("ky", size, scale, offset, k_units, navigate=False),
        _axis("kx", size, scale, offset, k_units, navigate=False),
    ]
    signal = hs.signals.Signal2D(data, axes=axes)
    if lazy:
        signal = signal.as_lazy()
    signal.set_signal_type("nmf_decide")
    n_crystals = params["n_crystals"]
    signal.metadata.General.title = (
        f"Simulated 4D-STEM scan: {n_crystals} crystal{'s' * (n_crystals > 1)}, "
        f"{params['layout']} layout, {params['dose']:g} e- per pattern"
    )
    units = "counts" if detector is None else "detector units"
    signal.metadata.Signal.quantity = f"Intensity ({units})"
    wavelength = _wavelength()
    signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", BEAM_ENERGY)
    signal.metadata.set_item("Acquisition_instrument.TEM.wavelength", wavelength)
    # Convergence semi-angle of a disc of radius 2 sigma, mrad.
    signal.metadata.set_item(
        "Acquisition_instrument.TEM.convergence_angle", 2 * spot_sigma * scale * wavelength * 1e3
    )
    signal.metadata.set_item("Simulation.true_k", true_k)
    signal.metadata.set_item("Simulation.parameters", json.dumps(params))
    return signal


def _axis(name: str, size: int, scale: float, offset: float, units: str, navigate: bool):
    return {
        "name": name,
        "size": size,
        "scale": scale,
        "offset": offset,
        "units": units,
        "navigate": navigate,
    }
