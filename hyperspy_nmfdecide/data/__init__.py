"""Seeded simulated 4D-STEM scans with ground truth, for demos, tests and benchmarks.

Every scan is built from a few noise-free *source* patterns and their non-negative *weights*
over the scan, which is exactly the model NMF fits; the data are Poisson counts drawn around
``weights @ sources``.  Nothing is downloaded: the crystal structures are written out here.

The physics, per source:

* **crystal sources**: kinematic zone-axis spot patterns simulated with diffsims
  (:class:`~diffsims.generators.simulation_generator.SimulationGenerator`, 200 kV, Lobato
  scattering factors, Debye-Waller factors, a Lorentzian relrod) for a crystal (Al, Fe, Si,
  MgO, Mg, Cu, ZnO, Au) built in code with diffpy.structure and orix, at a random
  orientation a little off a low-index zone axis.  The spots are Gaussian discs (the probe
  convergence) around the transmitted beam, which is *not* at the detector centre.  No direct
  beam in these patterns: the beam belongs to the background source.
* **background source** (index 0 when present): the direct beam, a Gaussian disc of the same
  size as the spots carrying most of the intensity, plus diffuse scattering: a halo decaying
  from the beam and two faint amorphous rings of a carbon support film.
* **weights**: the crystals are soft-edged blobs that overlap in places (``"overlapping"``),
  Voronoi grains (``"grains"``) or blobs of which one has a ×3-×5 thickness ramp
  (``"gradient"``); every crystal also has a smooth thickness variation of ±25 % so that the
  background and the crystals stay independent.  Crystals scatter 10-40 % of the counts
  where they are.  The weights are scaled so that the mean expected counts per pattern are
  ``dose``.

Optional physics (all off by default; see :func:`simulated_scan`) breaks that additive model
the way real scans do, while ``weights`` and ``sources`` keep describing the intended additive
model and :meth:`SimulatedScan.noise_free` gives the true expected counts:

* **beam depletion** and **absorption**: the electrons in the crystal spots leave the direct
  beam (so the beam is no longer a fixed part of the background source), and inelastic
  scattering leaves only a fraction exp(-mu t) of everything.
* **descan**: the whole pattern drifts across the scan (re-rendered at sub-pixel shifts).
* **dynamical-like intensities**: each reflection oscillates with thickness (Pendellösung), so
  a crystal is no longer one pattern times a map.
* **shared reflections**: two phases at the same orientation whose spots coincide.
* **overlap physics**: where crystals overlap each weakens the other's spots and double
  diffraction adds spots at g1 + g2.
* **detector model**: point-spread function, gain, dark offset and readout noise.

>>> from hyperspy_nmfdecide.data import simulated_scan
>>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=0)
>>> scan.signal.data.shape, scan.true_k, scan.source_names[0]
((8, 8, 32, 32), 4, 'background')

The package has one module a concept: :mod:`.scan` (:func:`simulated_scan`, stage by stage),
:mod:`.truth` (:class:`SimulatedScan`), :mod:`.arguments` and :mod:`.checks` (the argument
checks), :mod:`.seeds` (the random streams), :mod:`.crystals` (structures and reflections),
:mod:`.sources` (the crystal patterns), :mod:`.background`, :mod:`.layouts` (the crystals'
maps), :mod:`.options` and :mod:`.physics` (the non-additive physics), :mod:`.detector`,
:mod:`.render` (discs on the pixels), :mod:`.counts` (the Poisson draws) and
:mod:`.calibration` (the HyperSpy signal).
"""

from .arguments import MIN_K_MAX as MIN_K_MAX
from .arguments import MIN_PATTERN_SIZE as MIN_PATTERN_SIZE
from .crystals import BEAM_ENERGY as BEAM_ENERGY
from .crystals import CRYSTALS, crystal_phase

# Imported from here by tests/test_epattern.py: kept at this path.
from .render import _render_spots as _render_spots
from .scan import simulated_scan
from .truth import SimulatedScan

__all__ = ["CRYSTALS", "SimulatedScan", "crystal_phase", "simulated_scan"]
