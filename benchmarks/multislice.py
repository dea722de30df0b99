"""Multislice (dynamical) ground-truth scenes for the accuracy benchmark (not for CI).

The package's own simulated scans (:mod:`hyperspy_nmfdecide.data`) are kinematic and additive:
every pattern is ``weights @ sources``.  Real overlaps are not: the top crystal takes part of the
beam, each of its diffracted beams is diffracted again by the crystal below (double
diffraction adds spots at g_A + g_B), and spot intensities swing with thickness.  This script
simulates a few small seeded scenes of Au and Si nanocrystals on amorphous carbon with abTEM's
multislice, writes each as a 4D-STEM dataset plus its ground truth, loads them back as the
package's accuracy scorer expects, and runs the user's pipeline on them.

Run
---
Generation needs abTEM, which lives in its own virtualenv (never in the package's; abTEM 1.0
pins its own numpy and dask)::

    python3 -m venv abtem_venv && abtem_venv/bin/pip install abtem
    abtem_venv/bin/python benchmarks/multislice.py --out DIR

(``DIR`` defaults to ``~/.cache/nmfdecide_multislice``; a directory inside the repository is
refused.)  The loader and the evaluation need only numpy, json and HyperSpy with this package,
and run in the package's virtualenv::

    .venv/bin/python benchmarks/multislice.py --evaluate DIR

``load_scene(DIR / "a_au_au.json")`` returns a :class:`MultisliceScene`, which has the
attributes of :class:`hyperspy_nmfdecide.data.SimulatedScan` that
``benchmarks/phase_accuracy.py::score_phase_maps`` uses.

How a scene is built
--------------------
A scene is a scan of ``ny × nx`` probes (1 nm step) over crystals lying on a 5 nm amorphous
carbon film.  Computing a multislice for every probe would be wasteful: the scene is made of
regions of a few *configurations* (film only; film + crystal A; film + A + B stacked; ...).

* **Multislice of a configuration.**  Beam → film → crystals in index order (crystal 1 first),
  in a 51.2 × 51.2 Å periodic cell sampled on 384² points (0.133 Å; abTEM's 2/3 antialias
  aperture leaves 2.5 Å⁻¹), slices of 2 Å, Lobato potentials, 200 kV, a converged probe of
  2 mrad semi-angle, focused, no aberrations.  Each crystal is a slab cut from the rotated
  bulk lattice (Au fcc a = 4.0782 Å, Si diamond a = 5.431 Å) that fills the cell laterally; the
  film is a random close packing (minimum distance 1.35 Å, 2.0 g/cm³).  The intensity in the
  diffraction plane is averaged over ``n_phonons`` frozen-phonon configurations (Gaussian
  displacements from the Debye-Waller factors) × ``n_positions`` probe positions (± 6 Å around
  the cell centre), so that the film's speckle is not that of one position.
* **Thickness.**  The last crystal of a stack is computed once to its largest thickness with
  exit planes every 1 nm, so every configuration has a thickness series for free; the crystals
  before it (only in stacks) are computed at 1-3 thicknesses spanning the range they have in
  that overlap.  Each probe gets the pattern of its configuration at its local thicknesses,
  interpolated linearly between computed ones.  The overlap patterns come from the multislice
  of the *stack*, never from adding patterns.
* **Detector.**  The central 128² pixels of the diffraction plane (1/51.2 Å⁻¹ each) are binned
  2 × 2 to 64 × 64 pixels of 0.0390625 Å⁻¹: k_max = 1.25 Å⁻¹ at the detector edge.  The direct
  beam (a disc of 2.04 px radius) sits at pixel (x, y) = (32.75, 29.75), i.e. 0.75 px right and
  2.25 px above the detector centre, whose pixel 32 is k = 0 in the calibration (as in
  :mod:`hyperspy_nmfdecide.data`).
* **Scan.**  Crystals are soft-edged ellipses (the patterns of neighbouring configurations mix
  linearly over 1.5 probes: at a probe where crystal A covers a fraction c_A and B a fraction
  c_B, the configurations film, film+A, film+B, film+A+B have the fractions
  (1 - c_A)(1 - c_B), c_A(1 - c_B), ...) with a dome-shaped thickness (thin at the rim, thick
  in the middle), or hard-edged Voronoi grains with a thickness ramp across the scan.  The
  expected counts are ``dose`` × the patterns (``dose`` = incident electrons per probe; the
  patterns hold the fraction of the incident beam per pixel: all of it is detected on the
  film, 65-80 % behind 10-15 nm of Au, which scatters beyond 1.25 Å⁻¹, and less behind
  stacks), then Poisson noise.

Scenes (``SCENES``): ``a_au_au`` two Au crystals ([001], [011]) partly overlapping, 24², 1000
e⁻; ``b_si_au`` Si [011] and Au [111] overlapping, 28², 500 e⁻; ``c_three`` Au [001], Si [111]
and Au [112] overlapping in pairs and all three, 32², 2000 e⁻; ``d_grains`` four Voronoi grains
(Au [001], Si [011], Au [111], Si [001]) covering the film, with a thickness ramp across the
scan (Au 4 → 24 nm, Si 10 → 50 nm; each grain sees part of it), 32², 200 e⁻.  Orientations
are a few tenths of a degree off the zone axis, at a random in-plane angle.

Ground truth and its conventions
--------------------------------
Each scene ``NAME`` is written as ``NAME.npz`` (arrays) and ``NAME.json`` (parameters).

* ``true_k`` = number of crystals + 1: the film and the transmitted beam (the *background*)
  are present at every probe.  This counts physically distinct phases; the noise-free data
  are *not* of rank ``true_k`` (thickness swings and the non-additive overlaps add rank), and
  ``additive_model_residual`` in the JSON says by how much the additive model misses them.
* ``labels`` (ny, nx): 0 = film only, else a key of ``label_sets``, whose values are indices
  into the loader's ``sources`` (0 = background, crystal j → j + 1, as in ``SimulatedScan``);
  ``label_crystal_names`` names them.  A crystal is present at a probe where its intended
  weight exceeds ``presence_threshold`` (0.1) × its maximum, the rule of
  :mod:`hyperspy_nmfdecide.data`.  ``overlap`` = two or more crystals present.
* ``weights`` (ny, nx, 1 + n_crystals), expected counts: crystal j has dose × coverage_j ×
  share_j(t_j), share_j(t) being the fraction of the incident beam that crystal j alone on the
  film scatters out of the direct-beam disc at thickness t (from its own thickness series);
  the background has the counts of a film-only pattern whose direct beam is as strong as the
  beam transmitted at the probe (so the weights do not add up to the counts where crystals
  scatter: the model is not additive).
* ``sources`` in the npz (n_crystals, 64, 64): the noise-free pattern of each crystal alone on
  the film at its mean thickness, in fractions of the incident beam; ``film``: the film-only
  pattern.  The loader's ``sources`` (what the scorer matches factors to) are the film-only
  pattern then each crystal's *diffracted part*: its pattern on film minus
  (1 - share) × the film pattern (the beam it took away), clipped at 0; each sums to 1.  The
  raw patterns are the loader's ``sources_on_film``.
* Per crystal in the JSON: phase (structure, space group, lattice parameter, basis,
  Debye-Waller B), zone axis, tilt and in-plane angle, the rotation matrix R with
  ``r_lab = R @ r_crystal`` (lab x, y = scan / detector axes, z = beam direction) and the Bunge
  Euler angles (φ1, Φ, φ2) of the lab → crystal rotation ``R.T``, in degrees; thickness range
  and mean.  Also the beam position and radius in pixels, the calibration, the dose, every
  configuration's thickness grids and compute time, and the non-additivity of each stack.

Compute time
------------
About 13 CPU minutes for the four scenes on one core (15-17 min wall under ``nice -n 19`` on a
shared machine; the triple stack of ``c_three`` alone takes 4-5): see ``multislice_seconds``
and ``multislice_cpu_seconds`` (when each table was computed) beside ``compute_seconds`` and
``cpu_seconds`` (this run) in each JSON and in ``generation.json``.  Tables are cached in
``DIR/cache``, so another ``--dose`` (written as ``NAME_doseD``) only assembles.
``--phonons`` and ``--positions`` trade the averaging for time.

Evaluation
----------
``--evaluate DIR`` runs on each scene what a user types, ``s.nmf_sweep(range(2, 11),
n_restarts=10, random_state=0)``, ``s.decide_k()``, ``s.phase_maps()``, three times: with the
defaults, with ``signal_mask=s.direct_beam_mask(radius=R)`` (R = 4 px, the beam disc of 2 px
plus margin) and with ``signal_mask=False`` (every pixel fitted, where ``nmf_sweep`` takes it).
Each is scored with ``score_phase_maps`` (ARI, overlap F1, mean IoU) at the decided and at the
true k; per component it records where its loading lives (share on the true overlap) and
whether its factor resembles a source or the non-additive excess of a stack.  About 12 min;
results in ``DIR/evaluation.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import itertools
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("~/.cache/nmfdecide_multislice").expanduser()

#: Microscope and multislice parameters shared by every scene.
SIM = {
    "energy_eV": 200e3,
    "semiangle_mrad": 2.0,
    "cell_A": 51.2,
    "gpts": 384,
    "slice_A": 2.0,
    "detector_px": 64,
    "binning": 2,
    "beam_offset_px": (1, -2),  # (x, y) shift of the crop, detector pixels
    "film_thickness_A": 50.0,
    "film_density_per_A3": 0.1003,  # 2.0 g/cm3 of carbon
    "film_min_distance_A": 1.35,
    "film_seed": 2024,
    "thickness_step_A": 10.0,  # exit planes of the last crystal of a stack
    "n_phonons": 4,
    "probe_offsets_A": ((-6.0, -6.0), (6.0, -6.0), (-6.0, 6.0), (6.0, 6.0)),
    "n_lead": 3,  # thicknesses of a crystal that is not the last of its stack
    "probe_step_nm": 1.0,
    "edge_width_probes": 1.5,
    "presence_threshold": 0.1,
}

#: name: (structure, space group, a (Å), basis (fractional), Debye-Waller B (Å²)).
PHASES = {
    "Au": ("fcc", 225, 4.0782, ((0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)), 0.62),
    "Si": (
        "diamond",
        227,
        5.431,
        ((0, 0, 0), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5))
        + ((0.25, 0.25, 0.25), (0.75, 0.75, 0.25), (0.75, 0.25, 0.75), (0.25, 0.75, 0.75)),
        0.46,
    ),
}
CARBON_B = 1.0  # Å², frozen-phonon displacement of the film

#: The scenes.  Blob centres and radii are (y, x) fractions of the scan; angles in degrees.
SCENES = {
    "a_au_au": {
        "description": "two Au crystals ([001], [011]) partly overlapping on amorphous carbon",
        "nav_shape": (24, 24),
        "dose": 1000.0,
        "seed": 11,
        "layout": "blobs",
        "crystals": [
            {
                "phase": "Au",
                "zone": (0, 0, 1),
                "thickness_nm": (6.0, 16.0),
                "blob": {"centre": (0.36, 0.36), "radii": (0.30, 0.25), "angle": 25.0},
            },
            {
                "phase": "Au",
                "zone": (0, 1, 1),
                "thickness_nm": (6.0, 14.0),
                "blob": {"centre": (0.64, 0.64), "radii": (0.26, 0.31), "angle": -30.0},
            },
        ],
    },
    "b_si_au": {
        "description": "Si [011] and Au [111] overlapping on amorphous carbon",
        "nav_shape": (28, 28),
        "dose": 500.0,
        "seed": 12,
        "layout": "blobs",
        "crystals": [
            {
                "phase": "Si",
                "zone": (0, 1, 1),
                "thickness_nm": (15.0, 35.0),
                "blob": {"centre": (0.40, 0.60), "radii": (0.32, 0.26), "angle": 10.0},
            },
            {
                "phase": "Au",
                "zone": (1, 1, 1),
                "thickness_nm": (6.0, 14.0),
                "blob": {"centre": (0.62, 0.36), "radii": (0.25, 0.30), "angle": -20.0},
            },
        ],
    },
    "c_three": {
        "description": "Au [001], Si [111] and Au [112] overlapping in pairs and all three",
        "nav_shape": (32, 32),
        "dose": 2000.0,
        "seed": 13,
        "layout": "blobs",
        "crystals": [
            {
                "phase": "Au",
                "zone": (0, 0, 1),
                "thickness_nm": (6.0, 14.0),
                "blob": {"centre": (0.34, 0.32), "radii": (0.25, 0.22), "angle": 30.0},
            },
            {
                "phase": "Si",
                "zone": (1, 1, 1),
                "thickness_nm": (15.0, 30.0),
                "blob": {"centre": (0.40, 0.66), "radii": (0.22, 0.26), "angle": -15.0},
            },
            {
                "phase": "Au",
                "zone": (1, 1, 2),
                "thickness_nm": (6.0, 12.0),
                "blob": {"centre": (0.68, 0.48), "radii": (0.23, 0.27), "angle": 0.0},
            },
        ],
    },
    "d_grains": {
        "description": "four Voronoi grains of Au and Si on carbon with a thickness ramp",
        "nav_shape": (32, 32),
        "dose": 200.0,
        "seed": 14,
        "layout": "grains",
        "ramp_angle": 30.0,  # direction of the thickness ramp, degrees from the x axis
        "crystals": [
            {"phase": "Au", "zone": (0, 0, 1), "thickness_nm": (4.0, 24.0), "seed_yx": (0.2, 0.25)},
            {"phase": "Si", "zone": (0, 1, 1), "thickness_nm": (10.0, 50.0), "seed_yx": (0.3, 0.8)},
            {"phase": "Au", "zone": (1, 1, 1), "thickness_nm": (4.0, 24.0), "seed_yx": (0.8, 0.2)},
            {
                "phase": "Si",
                "zone": (0, 0, 1),
                "thickness_nm": (10.0, 50.0),
                "seed_yx": (0.75, 0.7),
            },
        ],
    },
}

TRUE_K_CONVENTION = (
    "true_k = number of crystals + 1: the amorphous film and the transmitted beam (the "
    "background) are present at every probe"
)


# -- geometry of the simulation ------------------------------------------------------------
def wavelength(energy_ev: float = SIM["energy_eV"]) -> float:
    """Relativistic electron wavelength.

    Parameters
    ----------
    energy_ev : float
        Beam energy, eV.

    Returns
    -------
    float
        Wavelength, Å.
    """
    m0c2 = 510998.95  # eV
    hc = 12398.419843  # eV Å
    return hc / math.sqrt(energy_ev * (2 * m0c2 + energy_ev))


def detector_geometry() -> dict:
    """Calibration, beam position and beam radius of the binned detector.

    Returns
    -------
    dict
        ``reciprocal_scale`` (Å⁻¹ per pixel), ``k_max`` (Å⁻¹ at the detector edge), ``crop``
        (first row and column of the crop in the fft-shifted simulation, abTEM's x then y),
        ``beam_position_px`` (x, y), ``beam_radius_px`` and ``mask_radius_px`` (a disc that
        covers the beam disc, for ``direct_beam_mask``).
    """
    n, size, binning = SIM["gpts"], SIM["detector_px"], SIM["binning"]
    dk = 1.0 / SIM["cell_A"]
    scale = dk * binning
    ox, oy = SIM["beam_offset_px"]
    half = size * binning // 2
    crop = (n // 2 - half - binning * ox, n // 2 - half - binning * oy)
    # Crop pixel c falls in binned pixel c // binning, whose centre is c = binning * i + ...
    centre = tuple((half + binning * o - (binning - 1) / 2) / binning for o in (ox, oy))
    radius = SIM["semiangle_mrad"] * 1e-3 / wavelength() / scale
    return {
        "reciprocal_scale": scale,
        "k_max": size / 2 * scale,
        "crop": crop,
        "beam_position_px": centre,
        "beam_radius_px": radius,
        "mask_radius_px": float(round(radius + 2)),
    }


def _rotation_about(axis, angle: float) -> np.ndarray:
    """Rotation matrix of ``angle`` (radians) about ``axis`` (Rodrigues)."""
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def orientation(zone, in_plane_deg: float, tilt_deg: float, tilt_azimuth_deg: float):
    """Rotation that puts cubic zone axis ``zone`` along the beam, turned and tilted.

    Parameters
    ----------
    zone : sequence of int
        Zone axis [uvw] (cubic: the same direction in Cartesian crystal coordinates).
    in_plane_deg : float
        Rotation about the beam, degrees.
    tilt_deg, tilt_azimuth_deg : float
        Tilt off the zone axis and the in-plane direction of its axis, degrees.

    Returns
    -------
    numpy.ndarray
        (3, 3) R with ``r_lab = R @ r_crystal`` (lab z = beam direction).
    """
    u = np.asarray(zone, dtype=float)
    u /= np.linalg.norm(u)
    z = np.array([0.0, 0.0, 1.0])
    cross = np.cross(u, z)
    if np.linalg.norm(cross) < 1e-12:
        r0 = np.eye(3)
    else:
        r0 = _rotation_about(cross, math.acos(float(np.clip(u @ z, -1, 1))))
    r_in = _rotation_about(z, math.radians(in_plane_deg))
    azimuth = math.radians(tilt_azimuth_deg)
    r_tilt = _rotation_about((math.cos(azimuth), math.sin(azimuth), 0.0), math.radians(tilt_deg))
    return r_tilt @ r_in @ r0


def bunge_euler(rotation: np.ndarray) -> tuple[float, float, float]:
    """Bunge Euler angles (ZXZ) of the lab → crystal rotation ``g = R.T``, degrees.

    Parameters
    ----------
    rotation : numpy.ndarray
        R of :func:`orientation` (crystal → lab).

    Returns
    -------
    tuple of float
        (φ1, Φ, φ2) with ``g = Rz(φ2) Rx(Φ) Rz(φ1)`` in the passive convention, i.e.
        ``g[2] = (sin φ1 sin Φ, -cos φ1 sin Φ, cos Φ)``.
    """
    g = np.asarray(rotation, dtype=float).T
    big_phi = math.acos(float(np.clip(g[2, 2], -1.0, 1.0)))
    if abs(math.sin(big_phi)) < 1e-9:
        phi1, phi2 = math.atan2(g[0, 1], g[0, 0]), 0.0
    else:
        phi1 = math.atan2(g[2, 0], -g[2, 1])
        phi2 = math.atan2(g[0, 2], g[1, 2])
    return tuple(
        math.degrees(a) % 360.0 if i != 1 else math.degrees(a)
        for i, a in enumerate((phi1, big_phi, phi2))
    )


# -- atoms -----------------------------------------------------------------------------------
def crystal_slab(phase: str, rotation, origin, z0: float, thickness: float):
    """Atoms of a crystal slab filling the cell laterally, ``z0 ≤ z < z0 + thickness``.

    Parameters
    ----------
    phase : str
        A key of :data:`PHASES`.
    rotation : numpy.ndarray
        R of :func:`orientation`.
    origin : sequence of float
        Lattice origin in the crystal frame, in unit cells (a seeded random shift).
    z0, thickness : float
        Entrance and thickness of the slab, Å.

    Returns
    -------
    numpy.ndarray
        (n, 3) positions, Å.
    """
    _, _, a, basis, _ = PHASES[phase]
    rotation = np.asarray(rotation, dtype=float)
    size = SIM["cell_A"]
    corners = np.array(list(itertools.product((0, size), (0, size), (0, thickness))))
    crystal = corners @ rotation / a  # R.T @ corner, in unit cells
    lo = np.floor(crystal.min(axis=0)) - 1
    hi = np.ceil(crystal.max(axis=0)) + 1
    cells = np.stack(
        np.meshgrid(*(np.arange(low, high) for low, high in zip(lo, hi)), indexing="ij"), -1
    ).reshape(-1, 3)
    sites = (cells[:, None, :] + np.asarray(basis) + np.asarray(origin)).reshape(-1, 3) * a
    lab = sites @ rotation.T
    keep = (
        (lab[:, 0] >= 0)
        & (lab[:, 0] < size)
        & (lab[:, 1] >= 0)
        & (lab[:, 1] < size)
        & (lab[:, 2] >= 0)
        & (lab[:, 2] < thickness)
    )
    return lab[keep] + (0.0, 0.0, z0)


def amorphous_carbon(thickness: float, seed: int) -> np.ndarray:
    """Random close packing of carbon (periodic laterally), ``0 ≤ z < thickness``.

    Parameters
    ----------
    thickness : float
        Film thickness, Å.
    seed : int
        Seed of the packing.

    Returns
    -------
    numpy.ndarray
        (n, 3) positions, Å, at ``SIM["film_density_per_A3"]`` with no two atoms closer than
        ``SIM["film_min_distance_A"]`` (random sequential addition).
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    size = SIM["cell_A"]
    d_min = SIM["film_min_distance_A"]
    target = int(round(SIM["film_density_per_A3"] * size * size * thickness))
    box = np.array([size, size, thickness + 10 * d_min])  # z padded: not periodic in z
    points = np.empty((0, 3))
    while len(points) < target:
        batch = rng.uniform(size=(max(256, (target - len(points)) // 2), 3))
        batch *= (size, size, thickness)
        if len(points):
            dist, _ = cKDTree(points, boxsize=box).query(batch, k=1)
            batch = batch[dist >= d_min]
        tree = cKDTree(batch, boxsize=box)
        drop = {j for _, j in tree.query_pairs(d_min)}
        batch = batch[[i for i in range(len(batch)) if i not in drop]]
        points = np.concatenate([points, batch[: target - len(points)]])
    return points


@functools.cache
def _film(thickness: float, seed: int) -> np.ndarray:
    """The film of :func:`amorphous_carbon`, built once per process."""
    film = amorphous_carbon(thickness, seed)
    film.flags.writeable = False
    return film


def _debye_sigma(b_factor: float) -> float:
    """Root-mean-square displacement along one axis (Å) of a Debye-Waller factor B (Å²)."""
    return math.sqrt(b_factor / (8 * math.pi**2))


# -- multislice ------------------------------------------------------------------------------
def _layers(config, crystals, lead_thicknesses, last_thickness):
    """(symbol, positions, sigma, seed) per layer, beam → film → crystals of ``config``."""
    film_t = SIM["film_thickness_A"]
    layers = [("C", _film(film_t, SIM["film_seed"]), _debye_sigma(CARBON_B), 0)]
    z0 = film_t
    for j, t in zip(config, list(lead_thicknesses) + [last_thickness]):
        c = crystals[j]
        positions = crystal_slab(c["phase"], c["rotation"], c["origin"], z0, t)
        layers.append((c["phase"], positions, _debye_sigma(PHASES[c["phase"]][4]), c["seed"]))
        z0 += t
    return layers, z0


def multislice_table(config, crystals, lead_grids, last_grid, *, n_phonons, offsets):
    """Detector patterns of one configuration over its thickness grids.

    Parameters
    ----------
    config : tuple of int
        Crystal indices stacked on the film, beam side first (empty: film only).
    crystals : list of dict
        Every crystal of the scene (``phase``, ``rotation``, ``origin``, ``seed``).
    lead_grids : list of numpy.ndarray
        Thicknesses (Å) of each crystal but the last of ``config``.
    last_grid : numpy.ndarray
        Thicknesses (Å) of the last crystal, computed as exit planes of one run.
    n_phonons : int
        Frozen-phonon configurations averaged.
    offsets : sequence of (float, float)
        Probe positions from the cell centre (Å) averaged.

    Returns
    -------
    numpy.ndarray
        (*[len(g) for g in lead_grids], len(last_grid), 64, 64) float32 (film only:
        (64, 64)): the fraction of the incident beam per detector pixel, rows = ky.
    """
    import abtem
    import scipy.fft
    from ase import Atoms

    geometry = detector_geometry()
    n, size, binning = SIM["gpts"], SIM["detector_px"], SIM["binning"]
    span = size * binning
    cx, cy = geometry["crop"]
    cell, slice_t = SIM["cell_A"], SIM["slice_A"]
    positions = [(cell / 2 + dx, cell / 2 + dy) for dx, dy in offsets]
    probe = abtem.Probe(
        energy=SIM["energy_eV"], semiangle_cutoff=SIM["semiangle_mrad"], extent=cell, gpts=n
    )
    incident = np.asarray(probe.build(abtem.CustomScan(positions), lazy=False).array)
    norm = float(np.mean(np.sum(np.abs(incident) ** 2, axis=(-2, -1)))) * n * n

    film_only = len(config) == 0
    lead_shape = tuple(len(g) for g in lead_grids)
    planes = 1 if film_only else len(last_grid)
    out = np.zeros(lead_shape + (planes, size, size))
    for lead in itertools.product(*(range(s) for s in lead_shape)):
        lead_t = [float(g[i]) for g, i in zip(lead_grids, lead)]
        last_max = 0.0 if film_only else float(last_grid[-1])
        for phonon in range(n_phonons):
            layers, total = _layers(config, crystals, lead_t, last_max)
            symbols, xyz = [], []
            for symbol, pos, sigma, seed in layers:
                rng = np.random.default_rng([seed, phonon, 7])
                xyz.append(pos + rng.normal(scale=sigma, size=pos.shape))
                symbols += [symbol] * len(pos)
            xyz = np.concatenate(xyz)
            xyz[:, :2] %= cell
            xyz[:, 2] = np.clip(xyz[:, 2], 0.0, total - 1e-6)
            atoms = Atoms(symbols, positions=xyz, cell=[cell, cell, total], pbc=[True, True, False])
            n_slices = int(round(total / slice_t))
            if film_only:
                exit_planes = (n_slices - 1,)
            else:
                start = total - last_max
                exit_planes = tuple(int(round((start + t) / slice_t)) - 1 for t in last_grid)
            potential = abtem.Potential(
                atoms, gpts=n, slice_thickness=slice_t, exit_planes=exit_planes
            )
            waves = probe.multislice(potential, scan=abtem.CustomScan(positions), lazy=False)
            psi = np.asarray(waves.array).reshape(planes, len(positions), n, n)
            intensity = np.abs(scipy.fft.fft2(psi, workers=1)) ** 2 / norm
            intensity = np.fft.fftshift(intensity, axes=(-2, -1)).mean(axis=1)
            crop = intensity[:, cx : cx + span, cy : cy + span]  # abTEM arrays are (x, y)
            binned = crop.reshape(planes, size, binning, size, binning).sum(axis=(2, 4))
            out[lead] += np.swapaxes(binned, -1, -2) / n_phonons  # rows = ky
    return (out[..., 0, :, :] if film_only else out).astype(np.float32)


# -- layout ----------------------------------------------------------------------------------
def _blob(shape, blob, edge):
    """Coverage (linear edge over ``edge`` probes) and dome profile (0-1) of one ellipse."""
    ny, nx = shape
    yy, xx = np.indices(shape, dtype=float)
    cy, cx = blob["centre"][0] * (ny - 1), blob["centre"][1] * (nx - 1)
    ry, rx = blob["radii"][0] * ny, blob["radii"][1] * nx
    angle = math.radians(blob["angle"])
    u = (xx - cx) * math.cos(angle) + (yy - cy) * math.sin(angle)
    v = -(xx - cx) * math.sin(angle) + (yy - cy) * math.cos(angle)
    r = np.hypot(u / rx, v / ry)
    distance = (1 - r) * math.sqrt(rx * ry)  # ≈ signed distance to the rim, probes
    coverage = np.clip(0.5 + distance / edge, 0.0, 1.0)
    dome = np.sqrt(np.clip(1 - r**2, 0.0, 1.0))
    return coverage, dome


def layout(scene: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Coverage and thickness of every crystal at every probe.

    Parameters
    ----------
    scene : dict
        An entry of :data:`SCENES`.

    Returns
    -------
    coverage : numpy.ndarray
        (ny, nx, n_crystals) fraction of the probe on each crystal, in [0, 1].
    thickness : numpy.ndarray
        (ny, nx, n_crystals) local thickness, Å (slice multiples), defined everywhere.
    info : dict
        What the layout drew (JSON-serialisable).
    """
    ny, nx = scene["nav_shape"]
    crystals = scene["crystals"]
    coverage = np.zeros((ny, nx, len(crystals)))
    profile = np.zeros_like(coverage)
    info: dict = {"kind": scene["layout"]}
    if scene["layout"] == "blobs":
        for j, c in enumerate(crystals):
            coverage[..., j], profile[..., j] = _blob((ny, nx), c["blob"], SIM["edge_width_probes"])
        info["profile"] = "dome: t_lo at the rim, t_hi at the centre, sqrt(1 - r^2)"
    else:
        yy, xx = np.indices((ny, nx), dtype=float)
        seeds = np.array([c["seed_yx"] for c in crystals]) * (ny - 1, nx - 1)
        d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
        owner = np.argmin(d2, axis=-1)
        coverage = (owner[..., None] == np.arange(len(crystals))).astype(float)
        angle = math.radians(scene["ramp_angle"])
        ramp = xx * math.cos(angle) + yy * math.sin(angle)
        ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
        profile[:] = ramp[..., None]
        info["profile"] = f"linear ramp t_lo → t_hi along {scene['ramp_angle']} deg from x"
        info["seeds_yx_probes"] = seeds.tolist()
    slice_t = SIM["slice_A"]
    thickness = np.empty_like(profile)
    for j, c in enumerate(crystals):
        lo, hi = (10 * t for t in c["thickness_nm"])
        thickness[..., j] = np.round((lo + (hi - lo) * profile[..., j]) / slice_t) * slice_t
    coverage[coverage < 1e-3] = 0.0
    return coverage, thickness, info


def configuration_fractions(coverage: np.ndarray) -> dict[tuple[int, ...], np.ndarray]:
    """Fraction of every probe in each configuration (stack of crystals present).

    Parameters
    ----------
    coverage : numpy.ndarray
        (ny, nx, n) coverage of each crystal.

    Returns
    -------
    dict
        Configuration (sorted tuple of crystal indices, () = film only) → (ny, nx) fraction;
        only configurations with some fraction > 0.  Fractions sum to 1 at every probe.
    """
    n = coverage.shape[-1]
    out = {}
    for members in itertools.product((False, True), repeat=n):
        frac = np.ones(coverage.shape[:2])
        for j, inside in enumerate(members):
            frac = frac * (coverage[..., j] if inside else 1 - coverage[..., j])
        if frac.max() > 1e-3:
            out[tuple(j for j in range(n) if members[j])] = frac
    total = sum(out.values())
    return {key: frac / total for key, frac in out.items()}


def _grid(values: np.ndarray, n: int, step: float | None) -> np.ndarray:
    """Thickness grid over ``values`` (Å): every ``step``, or ``n`` points; slice multiples."""
    slice_t = SIM["slice_A"]
    lo, hi = float(values.min()), float(values.max())
    if step is not None:
        lo = max(slice_t, math.floor(lo / step) * step)
        grid = np.arange(lo, hi + step - 1e-9, step)
        grid = np.unique(np.round(np.append(grid[grid < hi], hi) / slice_t) * slice_t)
        return np.maximum(grid, slice_t) if len(grid) > 1 else np.array([lo, lo + step])
    if hi - lo < 4 * slice_t:
        return np.array([round((lo + hi) / 2 / slice_t) * slice_t])
    if hi - lo < 20.0:
        n = 2
    return np.unique(np.round(np.linspace(lo, hi, n) / slice_t) * slice_t)


def _bracket(grid: np.ndarray, values: np.ndarray):
    """Linear interpolation indices and weight of ``values`` on ``grid`` (clipped to it)."""
    if len(grid) == 1:
        zero = np.zeros(len(values), dtype=int)
        return zero, zero, np.zeros(len(values))
    v = np.clip(values, grid[0], grid[-1])
    i1 = np.clip(np.searchsorted(grid, v, side="right"), 1, len(grid) - 1)
    i0 = i1 - 1
    return i0, i1, (v - grid[i0]) / (grid[i1] - grid[i0])


def interpolate(table: np.ndarray, grids: list[np.ndarray], values: list[np.ndarray]):
    """Multilinear interpolation of ``table`` over its thickness axes.

    Parameters
    ----------
    table : numpy.ndarray
        (*[len(g) for g in grids], ...) patterns (or any trailing shape).
    grids : list of numpy.ndarray
        The thickness grid of each leading axis.
    values : list of numpy.ndarray
        (n,) thicknesses per axis.

    Returns
    -------
    numpy.ndarray
        (n, ...) interpolated values (the table itself, repeated, without axes).
    """
    tail = table.shape[len(grids) :]
    if not grids:
        count = 1 if not values else len(values[0])
        return np.broadcast_to(table, (count,) + tail).astype(float)
    brackets = [_bracket(g, np.asarray(v, dtype=float)) for g, v in zip(grids, values)]
    out = np.zeros((len(values[0]),) + tail)
    for corner in itertools.product((0, 1), repeat=len(grids)):
        index = tuple(b[c] for b, c in zip(brackets, corner))
        weight = np.prod([b[2] if c else 1 - b[2] for b, c in zip(brackets, corner)], axis=0)
        out += weight.reshape((-1,) + (1,) * len(tail)) * table[index]
    return out


def _labels(crystal_weights: np.ndarray, threshold: float):
    """Labels of the sets of crystals present (source indices, background = 0 not listed)."""
    peak = crystal_weights.max(axis=(0, 1))
    present = crystal_weights > threshold * np.where(peak > 0, peak, np.inf)
    ny, nx, n = present.shape
    codes = present.reshape(-1, n)
    sets = sorted(
        (tuple(int(j) + 1 for j in np.flatnonzero(row)) for row in np.unique(codes, axis=0)),
        key=lambda s: (len(s), s),
    )
    sets = [s for s in sets if s]
    label_sets = {label: members for label, members in enumerate(sets, start=1)}
    lookup = {members: label for label, members in label_sets.items()}
    labels = np.array(
        [lookup.get(tuple(int(j) + 1 for j in np.flatnonzero(row)), 0) for row in codes]
    ).reshape(ny, nx)
    return labels, label_sets


# -- generation ------------------------------------------------------------------------------
def _cache_key(config, crystals, lead_grids, last_grid, n_phonons, offsets) -> str:
    """Hash of everything a configuration's table depends on."""
    spec = {
        "sim": {k: v for k, v in SIM.items() if k not in ("n_phonons", "probe_offsets_A")},
        "config": [
            {k: np.asarray(crystals[j][k]).round(12).tolist() for k in ("rotation", "origin")}
            | {"phase": crystals[j]["phase"], "seed": crystals[j]["seed"]}
            for j in config
        ],
        "lead": [np.asarray(g).tolist() for g in lead_grids],
        "last": None if not config else np.asarray(last_grid).tolist(),
        "n_phonons": n_phonons,
        "offsets": [list(o) for o in offsets],
        "version": 1,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def _beam_disc(shape) -> np.ndarray:
    """The direct-beam disc plus 1 pixel: where the transmitted beam is measured."""
    geometry = detector_geometry()
    yy, xx = np.indices(shape)
    x0, y0 = geometry["beam_position_px"]
    return np.hypot(xx - x0, yy - y0) <= geometry["beam_radius_px"] + 1.0


def generate_scene(name: str, out: Path, *, dose=None, n_phonons=None, n_positions=None) -> dict:
    """Simulate one scene of :data:`SCENES` and write ``NAME.npz`` and ``NAME.json``.

    Parameters
    ----------
    name : str
        A key of :data:`SCENES`.
    out : pathlib.Path
        Output directory (outside the repository); tables are cached in ``out / "cache"``.
    dose : float, optional
        Incident electrons per probe (default: the scene's); another dose is written as
        ``NAME_doseD`` beside the default one, from the same cached tables.
    n_phonons, n_positions : int, optional
        Frozen phonons and probe positions averaged (default: ``SIM``'s 4 and 4).

    Returns
    -------
    dict
        The parameters written to the JSON.
    """
    import abtem

    start, cpu_start = time.perf_counter(), time.process_time()
    scene = SCENES[name]
    stem = name if dose is None else f"{name}_dose{float(dose):g}"
    dose = float(scene["dose"] if dose is None else dose)
    n_phonons = SIM["n_phonons"] if n_phonons is None else int(n_phonons)
    offsets = SIM["probe_offsets_A"][: (n_positions or len(SIM["probe_offsets_A"]))]
    ny, nx = scene["nav_shape"]
    size = SIM["detector_px"]
    geometry = detector_geometry()
    rng = np.random.default_rng(scene["seed"])

    crystals = []
    for j, spec in enumerate(scene["crystals"]):
        in_plane = float(rng.uniform(0, 360))
        tilt = float(rng.uniform(0.2, 0.6))
        azimuth = float(rng.uniform(0, 360))
        rotation = orientation(spec["zone"], in_plane, tilt, azimuth)
        structure, group, a, basis, b_factor = PHASES[spec["phase"]]
        crystals.append(
            {
                "name": f"crystal {j + 1} ({spec['phase']} [{''.join(map(str, spec['zone']))}])",
                "phase": spec["phase"],
                "structure": structure,
                "space_group": group,
                "lattice_parameter_A": a,
                "basis_fractional": [list(p) for p in basis],
                "debye_waller_B_A2": b_factor,
                "zone_axis": list(spec["zone"]),
                "in_plane_angle_deg": in_plane,
                "tilt_deg": tilt,
                "tilt_azimuth_deg": azimuth,
                "rotation": rotation,
                "rotation_convention": "r_lab = R @ r_crystal; lab z = beam direction",
                "euler_bunge_deg": bunge_euler(rotation),
                "beam_direction_crystal": (rotation.T @ (0.0, 0.0, 1.0)).tolist(),
                "origin": rng.uniform(0, 1, size=3).tolist(),
                "seed": int(scene["seed"]) * 100 + j + 1,
                "thickness_range_nm": list(spec["thickness_nm"]),
            }
        )

    coverage, thickness, layout_info = layout(scene)
    fractions = configuration_fractions(coverage)
    for j in range(len(crystals)):  # every crystal alone on the film, for its source
        fractions.setdefault((j,), np.zeros((ny, nx)))
    fractions.setdefault((), np.zeros((ny, nx)))
    for j, c in enumerate(crystals):
        inside = coverage[..., j] >= 0.5
        c["mean_thickness_nm"] = float(thickness[..., j][inside].mean()) / 10
        c["n_probes_majority"] = int(inside.sum())

    cache = out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    tables, config_info = {}, []
    table_seconds = table_cpu_seconds = 0.0
    expected = np.zeros((ny, nx, size, size))
    for config in sorted(fractions, key=lambda s: (len(s), s)):
        frac = fractions[config]
        where = frac > 1e-3
        if config and not where.any():
            where = coverage[..., config[0]] >= 0.5
        if len(config) == 1:  # the whole crystal: its source and weights need every thickness
            where = coverage[..., config[0]] > 0
        lead_grids = [_grid(thickness[..., j][where], SIM["n_lead"], None) for j in config[:-1]]
        last_grid = (
            np.array([0.0])
            if not config
            else _grid(thickness[..., config[-1]][where], 0, SIM["thickness_step_A"])
        )
        key = _cache_key(config, crystals, lead_grids, last_grid, n_phonons, offsets)
        path = cache / f"{key}.npy"
        timing_path = path.with_suffix(".json")
        t0, cpu0 = time.perf_counter(), time.process_time()
        cached = path.exists()
        if cached:
            table = np.load(path)
        else:
            table = multislice_table(
                config, crystals, lead_grids, last_grid, n_phonons=n_phonons, offsets=offsets
            )
            np.save(path, table)
            timing_path.write_text(
                json.dumps(
                    {
                        "seconds": time.perf_counter() - t0,
                        "cpu_seconds": time.process_time() - cpu0,
                    }
                )
            )
        seconds = time.perf_counter() - t0
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
        table_seconds += timing.get("seconds", float("nan"))
        table_cpu_seconds += timing.get("cpu_seconds", float("nan"))
        grids = lead_grids + ([] if not config else [last_grid])
        tables[config] = (table, grids)
        if frac.any():
            idx = np.flatnonzero(frac.ravel() > 0)
            values = [thickness[..., j].ravel()[idx] for j in config]
            patterns = interpolate(table, grids, values)
            flat = expected.reshape(ny * nx, size, size)
            flat[idx] += frac.ravel()[idx, None, None] * patterns
        config_info.append(
            {
                "crystals": list(config),
                "lead_grid_nm": [(g / 10).tolist() for g in lead_grids],
                "last_grid_nm": (last_grid / 10).tolist() if config else [],
                "max_fraction": float(frac.max()),
                "probes_majority": int((frac >= 0.5).sum()),
                "seconds": round(seconds, 2),
                "cached": cached,
                "multislice_seconds": timing.get("seconds"),
                "multislice_cpu_seconds": timing.get("cpu_seconds"),
            }
        )
        print(
            f"  {name} config {config or '(film)'}: {len(table.reshape(-1, size, size))} "
            f"patterns, {seconds:.1f} s{' (cached)' if cached else ''}",
            flush=True,
        )
    expected *= dose

    # Ground truth: sources, shares, intended weights, labels.
    disc = _beam_disc((size, size))
    film = tables[()][0].astype(float)
    film_beam = film[disc].sum()
    n_cr = len(crystals)
    on_film = np.empty((n_cr, size, size))
    diffracted = np.empty((n_cr, size, size))
    weights = np.zeros((ny, nx, n_cr + 1))
    for j in range(n_cr):
        table, grids = tables[(j,)]
        shares = 1 - table[..., disc].sum(axis=-1) / film_beam  # per thickness of the grid
        t_mean = 10 * crystals[j]["mean_thickness_nm"]
        on_film[j] = interpolate(table, grids, [np.array([t_mean])])[0]
        share_mean = float(interpolate(shares[:, None], grids, [np.array([t_mean])])[0, 0])
        part = np.clip(on_film[j] - (1 - share_mean) * film, 0.0, None)
        diffracted[j] = part / part.sum()
        crystals[j]["dose_share_at_mean_thickness"] = share_mean
        crystals[j]["share_by_thickness"] = {
            "thickness_nm": (grids[0] / 10).tolist(),
            "share": shares.tolist(),
        }
        local = interpolate(shares[:, None], grids, [thickness[..., j].ravel()])[:, 0]
        weights[..., j + 1] = dose * coverage[..., j] * np.clip(local, 0, None).reshape(ny, nx)
    total = expected.sum(axis=(2, 3))
    # The background: the film pattern as strong as the transmitted beam left at the probe.
    weights[..., 0] = expected[..., disc].sum(axis=-1) * film.sum() / film_beam
    labels, label_sets = _labels(weights[..., 1:], SIM["presence_threshold"])
    overlap_table = np.zeros(labels.max() + 1, dtype=bool)
    for label, members in label_sets.items():
        overlap_table[label] = len(members) >= 2
    overlap = overlap_table[labels]

    # How far from additive: the stack against film + A + film + B - film, and the scan.
    nonadditivity = {}
    for config, (table, grids) in tables.items():
        if len(config) < 2:
            continue
        means = [np.array([10 * crystals[j]["mean_thickness_nm"]]) for j in config]
        stack = interpolate(table, grids, means)[0]
        singles = [
            interpolate(tables[(j,)][0], tables[(j,)][1], [m])[0] for j, m in zip(config, means)
        ]
        additive = sum(singles) - (len(config) - 1) * film
        nonadditivity[",".join(map(str, config))] = {
            "relative_l1": float(np.abs(stack - additive).sum() / np.abs(stack - film).sum()),
            "transmitted_beam_stack": float(stack[disc].sum()),
            "transmitted_beam_additive": float(additive[disc].sum()),
        }
    loader_sources = np.concatenate([(film / film.sum())[None], diffracted])
    model = weights.reshape(-1, n_cr + 1) @ loader_sources.reshape(n_cr + 1, -1)
    residual = float(
        np.linalg.norm(model - expected.reshape(ny * nx, -1)) / np.linalg.norm(expected)
    )

    noise_rng = np.random.default_rng([scene["seed"], 99])
    counts = noise_rng.poisson(expected)
    if counts.max() >= np.iinfo(np.uint16).max:
        raise RuntimeError("counts overflow uint16")
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start

    config_patterns = []
    for config, (table, grids) in tables.items():
        means = [np.array([10 * crystals[j]["mean_thickness_nm"]]) for j in config]
        config_patterns.append(interpolate(table, grids, means)[0])
    params = {
        "name": stem,
        "scene": name,
        "description": scene["description"],
        "nav_shape": [ny, nx],
        "pattern_shape": [size, size],
        "dose": dose,
        "dose_meaning": "incident electrons per probe (expected counts = dose x pattern)",
        "mean_detected_counts": float(total.mean()),
        "seed": scene["seed"],
        "crystal_names": [c["name"] for c in crystals],
        "source_names": ["background"] + [c["name"] for c in crystals],
        "background_index": 0,
        "true_k": n_cr + 1,
        "true_k_convention": TRUE_K_CONVENTION,
        "presence_threshold": SIM["presence_threshold"],
        "label_sets": {str(k): list(v) for k, v in label_sets.items()},
        "label_crystal_names": {
            str(k): [crystals[j - 1]["name"] for j in v] for k, v in label_sets.items()
        },
        "label_sets_convention": "indices into the loader's sources: 0 = background, "
        "crystal j (0-based) -> j + 1",
        "calibration": {
            "reciprocal_scale_per_px": geometry["reciprocal_scale"],
            "reciprocal_units": "1/Angstrom",
            "k_max": geometry["k_max"],
            "k_origin_px": size / 2,
            "probe_step_nm": SIM["probe_step_nm"],
        },
        "beam": {
            "position_px_xy": list(geometry["beam_position_px"]),
            "radius_px": geometry["beam_radius_px"],
            "mask_radius_px": geometry["mask_radius_px"],
            "convergence_semiangle_mrad": SIM["semiangle_mrad"],
            "energy_kV": SIM["energy_eV"] / 1e3,
            "wavelength_A": wavelength(),
        },
        "simulation": SIM | {"n_phonons": n_phonons, "probe_offsets_A": [list(o) for o in offsets]},
        "film": {
            "material": "amorphous carbon",
            "thickness_nm": SIM["film_thickness_A"] / 10,
            "density_g_cm3": 2.0,
            "position": "beam side (beam -> film -> crystals in index order)",
        },
        "layout": layout_info,
        "crystals": crystals,
        "configurations": config_info,
        "configuration_order": [list(c) for c in tables],
        "nonadditivity": nonadditivity,
        "additive_model_residual": residual,
        "compute_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "multislice_seconds": round(table_seconds, 1),
        "multislice_cpu_seconds": round(table_cpu_seconds, 1),
        "versions": {"abtem": abtem.__version__, "numpy": np.__version__},
    }
    params = _jsonable(params)
    np.savez_compressed(
        out / f"{stem}.npz",
        data=counts.astype(np.uint16),
        noise_free=expected.astype(np.float32),
        labels=labels,
        overlap=overlap,
        weights=weights,
        sources=on_film,
        film=film,
        diffracted=diffracted,
        coverage=coverage,
        thickness_nm=thickness / 10,
        config_patterns=np.array(config_patterns),
    )
    (out / f"{stem}.json").write_text(json.dumps(params, indent=1))
    return params


def _jsonable(value):
    """``value`` with numpy arrays and scalars turned into Python objects (for JSON)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def generate(out: Path, scenes=None, **options) -> None:
    """Generate ``scenes`` (default all) into ``out`` and write ``generation.json``.

    Parameters
    ----------
    out : pathlib.Path
        Output directory, outside the repository.
    scenes : list of str, optional
        Keys of :data:`SCENES`.
    **options
        ``dose``, ``n_phonons``, ``n_positions`` for :func:`generate_scene`.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import abtem
    import dask

    abtem.config.set({"fft": "numpy", "diagnostics.progress_bar": False, "device": "cpu"})
    dask.config.set(scheduler="synchronous")
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    for name in scenes or SCENES:
        print(f"{name}: {SCENES[name]['description']}", flush=True)
        params = generate_scene(name, out, **options)
        summary[params["name"]] = {
            "compute_seconds": params["compute_seconds"],
            "cpu_seconds": params["cpu_seconds"],
            "multislice_seconds": params["multislice_seconds"],
            "multislice_cpu_seconds": params["multislice_cpu_seconds"],
            "true_k": params["true_k"],
            "additive_model_residual": params["additive_model_residual"],
            "nonadditivity": params["nonadditivity"],
        }
        print(f"  {params['compute_seconds']:.0f} s, true k {params['true_k']}", flush=True)
    summary["total_seconds"] = round(time.perf_counter() - start, 1)
    summary["total_cpu_seconds"] = round(time.process_time() - cpu_start, 1)
    summary["note"] = (
        "total_*: this run (cached tables load in no time); multislice_*: when each table was "
        "computed (a table shared by scenes, e.g. the film, is counted in each)"
    )
    (out / "generation.json").write_text(json.dumps(_jsonable(summary), indent=1))
    print(
        f"total {summary['total_seconds']:.0f} s wall, {summary['total_cpu_seconds']:.0f} s CPU"
        f" → {out}"
    )


# -- loading ---------------------------------------------------------------------------------
@dataclasses.dataclass(repr=False)
class MultisliceScene:
    """A multislice scene and its ground truth, as the accuracy scorer expects.

    Attributes
    ----------
    signal : hyperspy Signal2D
        Poisson counts (float32), signal type ``"nmf_decide"``, calibrated like
        :mod:`hyperspy_nmfdecide.data` (navigation in nm; kx, ky in Å⁻¹, 0 at pixel 32).
    sources : numpy.ndarray
        (1 + n_crystals, H, W): the film-only pattern, then each crystal's diffracted part
        (its pattern on film minus the beam it took from the film pattern); each sums to 1.
    weights : numpy.ndarray
        (ny, nx, 1 + n_crystals) intended expected counts of each source.
    labels, label_sets, overlap
        Ground-truth phases (``label_sets`` values index ``sources``).
    source_names : list of str
        ``"background"`` then the crystal names.
    background_index : int
        0.
    true_k : int
        Crystals + 1 (the film and beam are everywhere).
    dose : float
        Incident electrons per probe.
    params : dict
        The JSON (``presence_threshold``, ``beam``, ``crystals``, ...).
    beam_mask : numpy.ndarray
        (H, W) bool, True inside ``params["beam"]["mask_radius_px"]`` of the true beam.
    sources_on_film : numpy.ndarray
        (n_crystals, H, W) each crystal alone on the film at its mean thickness (fraction of
        the incident beam per pixel).
    film : numpy.ndarray
        (H, W) the film-only pattern, same units.
    noise_free : numpy.ndarray
        (ny, nx, H, W) expected counts.
    config_patterns : dict
        Configuration (tuple of crystal indices) → its pattern at the mean thicknesses.
    coverage, thickness_nm : numpy.ndarray
        (ny, nx, n_crystals) layout.
    """

    signal: object
    sources: np.ndarray
    weights: np.ndarray
    labels: np.ndarray
    label_sets: dict
    overlap: np.ndarray
    source_names: list
    background_index: int
    true_k: int
    dose: float
    params: dict
    beam_mask: np.ndarray
    sources_on_film: np.ndarray
    film: np.ndarray
    noise_free: np.ndarray
    config_patterns: dict
    coverage: np.ndarray
    thickness_nm: np.ndarray

    def __repr__(self) -> str:
        return (
            f"<MultisliceScene {self.params['name']} {self.noise_free.shape}, "
            f"true_k={self.true_k}, dose={self.dose:g}>"
        )


def _scene_paths(path) -> tuple[Path, Path]:
    """The JSON and npz paths of a scene given as either file or their common stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".npz") else path
    return stem.with_suffix(".json"), stem.with_suffix(".npz")


def load_scene(path) -> MultisliceScene:
    """Load a scene written by :func:`generate_scene` (numpy, json and HyperSpy only).

    Parameters
    ----------
    path : str or pathlib.Path
        ``DIR/NAME.json``, ``DIR/NAME.npz`` or ``DIR/NAME``.

    Returns
    -------
    MultisliceScene
    """
    import hyperspy.api as hs

    json_path, npz_path = _scene_paths(path)
    params = json.loads(json_path.read_text())
    with np.load(npz_path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    ny, nx = params["nav_shape"]
    size = params["pattern_shape"][0]
    cal = params["calibration"]
    scale = cal["reciprocal_scale_per_px"]
    offset = -cal["k_origin_px"] * scale
    step = cal["probe_step_nm"]
    axes = [
        {"name": "y", "size": ny, "scale": step, "offset": 0.0, "units": "nm", "navigate": True},
        {"name": "x", "size": nx, "scale": step, "offset": 0.0, "units": "nm", "navigate": True},
    ] + [
        {
            "name": n,
            "size": size,
            "scale": scale,
            "offset": offset,
            "units": r"$\AA^{-1}$",
            "navigate": False,
        }
        for n in ("ky", "kx")
    ]
    signal = hs.signals.Signal2D(arrays["data"].astype(np.float32), axes=axes)
    signal.set_signal_type("nmf_decide")
    signal.metadata.General.title = f"Multislice scene {params['name']}: {params['description']}"
    signal.metadata.Signal.quantity = "Intensity (counts)"
    beam = params["beam"]
    signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", beam["energy_kV"])
    signal.metadata.set_item("Acquisition_instrument.TEM.wavelength", beam["wavelength_A"])
    signal.metadata.set_item(
        "Acquisition_instrument.TEM.convergence_angle", beam["convergence_semiangle_mrad"]
    )
    signal.metadata.set_item("Simulation.true_k", params["true_k"])
    signal.metadata.set_item("Simulation.parameters", json.dumps(params))

    film = arrays["film"]
    sources = np.concatenate([(film / film.sum())[None], arrays["diffracted"]])
    yy, xx = np.indices((size, size))
    x0, y0 = beam["position_px_xy"]
    beam_mask = np.hypot(xx - x0, yy - y0) <= beam["mask_radius_px"]
    configs = [tuple(c) for c in params["configuration_order"]]
    return MultisliceScene(
        signal=signal,
        sources=sources,
        weights=arrays["weights"],
        labels=arrays["labels"],
        label_sets={int(k): tuple(v) for k, v in params["label_sets"].items()},
        overlap=arrays["overlap"].astype(bool),
        source_names=list(params["source_names"]),
        background_index=int(params["background_index"]),
        true_k=int(params["true_k"]),
        dose=float(params["dose"]),
        params=params,
        beam_mask=beam_mask,
        sources_on_film=arrays["sources"],
        film=film,
        noise_free=arrays["noise_free"],
        config_patterns=dict(zip(configs, arrays["config_patterns"])),
        coverage=arrays["coverage"],
        thickness_nm=arrays["thickness_nm"],
    )


# -- evaluation ------------------------------------------------------------------------------
def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) cosine similarities of flattened patterns (the package's measure)."""
    from hyperspy_nmfdecide.similarity import cosine_similarity

    return cosine_similarity(a.reshape(len(a), -1), b.reshape(len(b), -1))


def describe_components(scene: MultisliceScene, pm) -> list[dict]:
    """Where each component of ``pm`` lives and what its factor looks like.

    Parameters
    ----------
    scene : MultisliceScene
        The ground truth.
    pm : PhaseMaps
        Phase maps of a sweep of ``scene.signal``; the sweep's ``signal_mask`` is left out of
        every pattern compared.

    Returns
    -------
    list of dict
        Per component: ``overlap_share`` (share of its loading on true overlap probes, which
        cover ``overlap_area`` of the scan), ``film_share`` (on film-only probes), the
        best-matching source and its factor cosine similarity, the ``role`` that ``pm.roles``
        gives it where this version of the package has them, and the best cosine similarity
        with the *non-additive excess* of a stack: its pattern minus the additive prediction
        (the sum of its crystals each alone on the film, minus the film counted once too
        often), positive part, outside the direct-beam disc: the spots the stack has and the
        additive model lacks (double diffraction, redistributed intensities).
    """
    keep = ~scene.beam_mask if pm.signal_mask is None else ~np.asarray(pm.signal_mask, bool)
    keep = keep.reshape(scene.sources.shape[1:])
    factors = pm.factors.reshape(pm.k, -1) * keep.ravel()
    loadings = pm.loadings.reshape(scene.labels.shape + (pm.k,))
    sim = _cosine(factors, scene.sources * keep)
    excess = {}
    for config, pattern in scene.config_patterns.items():
        if len(config) < 2:
            continue
        singles = sum(scene.config_patterns[(j,)] for j in config)
        additive = singles - (len(config) - 1) * scene.film
        excess[config] = np.clip(pattern - additive, 0, None) * keep * ~scene.beam_mask
    ex_names = list(excess)
    ex_sim = _cosine(factors, np.array(list(excess.values()))) if excess else None
    roles = list(getattr(pm, "roles", None) or [])  # newer versions name each component's role
    out = []
    for c in range(pm.k):
        load = loadings[..., c]
        mass = load.sum()
        entry = {
            "component": c,
            "background": c == pm.background_index,
            "overlap_share": float(load[scene.overlap].sum() / mass) if mass > 0 else 0.0,
            "overlap_area": float(scene.overlap.mean()),
            "film_share": float(load[scene.labels == 0].sum() / mass) if mass > 0 else 0.0,
            "best_source": scene.source_names[int(np.argmax(sim[c]))],
            "best_source_cosine": float(sim[c].max()),
        }
        if c < len(roles):
            entry["role"] = roles[c].get("role")
            entry["role_parents"] = roles[c].get("parents")
        if ex_sim is not None:
            i = int(np.argmax(ex_sim[c]))
            entry["best_excess"] = "+".join(str(j + 1) for j in ex_names[i])
            entry["best_excess_cosine"] = float(ex_sim[c, i])
        out.append(entry)
    return out


#: The runs of :func:`evaluate`: name -> what is passed as ``signal_mask`` (``"hand"``: a
#: disc of ``params["beam"]["mask_radius_px"]`` around the beam found by
#: ``s.direct_beam_mask(radius=R)``).
RUNS = {"default": None, "masked": "hand", "unmasked": False}


def _score(scene: MultisliceScene, pm, score_phase_maps) -> dict:
    """``score_phase_maps`` with the sources zeroed where the sweep masked the patterns."""
    if pm.signal_mask is not None:
        mask = np.asarray(pm.signal_mask, dtype=bool).reshape(scene.sources.shape[1:])
        scene = dataclasses.replace(scene, sources=scene.sources * ~mask)
    return score_phase_maps(scene, pm)


def evaluate(
    directory, *, scenes=None, runs=None, k_range=range(2, 11), n_restarts=10
) -> list[dict]:
    """Run the user's pipeline on every scene in ``directory`` and score it.

    Per scene, exactly what a user types: ``s.nmf_sweep(range(2, 11), n_restarts=10,
    random_state=0)``, ``s.decide_k()``, ``s.phase_maps()`` (the ``"default"`` run); then the
    same with ``signal_mask=s.direct_beam_mask(radius=R)``, R =
    ``params["beam"]["mask_radius_px"]`` (``"masked"``), and with ``signal_mask=False``
    (``"unmasked"``: every pixel fitted; skipped if this version of ``nmf_sweep`` refuses it).
    Each is scored with ``score_phase_maps`` (sources zeroed where the sweep masked the
    patterns), and also phase-mapped and scored at the true k.  Writes ``evaluation.json``
    into ``directory``.

    Parameters
    ----------
    directory : str or pathlib.Path
        Where :func:`generate` wrote the scenes.
    scenes : list of str, optional
        Scene names (default: every ``*.npz`` with its JSON).
    runs : list of str, optional
        Keys of :data:`RUNS` (default all).
    k_range : iterable of int
        Passed to ``nmf_sweep``.
    n_restarts : int
        Passed to ``nmf_sweep``.

    Returns
    -------
    list of dict
        One record per scene and run.
    """
    from hyperspy.defaults_parser import preferences

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from phase_accuracy import score_phase_maps

    preferences.General.show_progressbar = False
    directory = Path(directory)
    names = scenes or sorted(p.stem for p in directory.glob("*.npz"))
    records = []
    for name in names:
        for run in runs or RUNS:
            scene = load_scene(directory / name)
            s = scene.signal
            radius = scene.params["beam"]["mask_radius_px"]
            t0 = time.perf_counter()
            kwargs = {}
            if RUNS[run] == "hand":
                kwargs["signal_mask"] = s.direct_beam_mask(radius=radius)
            elif RUNS[run] is False:
                kwargs["signal_mask"] = False
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    sweep = s.nmf_sweep(k_range, n_restarts=n_restarts, random_state=0, **kwargs)
                except (TypeError, ValueError) as error:
                    print(f"{name:<10} {run:<9} skipped: {error}", flush=True)
                    continue
                decision = s.decide_k()
                pm = s.phase_maps()
                pm_true = s.phase_maps(k=scene.true_k, store=False)
            r = _score(scene, pm, score_phase_maps)
            r_true = _score(scene, pm_true, score_phase_maps)
            used = None if pm.signal_mask is None else np.asarray(pm.signal_mask, bool)
            used = None if used is None else used.reshape(scene.beam_mask.shape)
            record = {
                "scene": name,
                "run": run,
                "sweep_signal_mask": sweep.params.get("signal_mask"),
                "masked_pixels": 0 if used is None else int(used.sum()),
                "mask_iou_with_true_beam_disc": None
                if used is None
                else float((used & scene.beam_mask).sum() / (used | scene.beam_mask).sum()),
                "true_k": scene.true_k,
                "k": int(decision.k),
                "elbow_k": int(decision.elbow_k),
                "reason": str(decision.reason),
                "ari": r["ari"],
                "overlap_f1": r["overlap_f1"],
                "mean_iou": r["mean_iou"],
                "n_phases": r["n_phases"],
                "n_true_labels": r["n_true_labels"],
                "n_phases_at_true_k": r_true["n_phases"],
                "background_component": pm.background_index,
                "naive_scaled_ari": r["naive_scaled_ari"],
                "ari_at_true_k": r_true["ari"],
                "overlap_f1_at_true_k": r_true["overlap_f1"],
                "mean_iou_at_true_k": r_true["mean_iou"],
                "components": describe_components(scene, pm),
                "components_at_true_k": describe_components(scene, pm_true),
                "warnings": [str(w.message) for w in caught if w.category is UserWarning],
                "seconds": round(time.perf_counter() - t0, 1),
            }
            records.append(record)
            print(
                f"{name:<10} {run:<9} mask {record['masked_pixels']:>3} px  true k "
                f"{scene.true_k}  k {record['k']} (elbow {record['elbow_k']})  ARI {r['ari']:.3f}"
                f"  overlap F1 {r['overlap_f1']:.3f}  mean IoU {r['mean_iou']:.3f}  | at true k:"
                f" ARI {r_true['ari']:.3f}  F1 {r_true['overlap_f1']:.3f}"
                f"  ({record['seconds']:.0f} s)",
                flush=True,
            )
            for comp in record["components"]:
                if comp["overlap_share"] > 0.5:
                    print(
                        f"{'':<20}component {comp['component']} ({comp.get('role', '?')}) "
                        "lives in the overlap "
                        f"({comp['overlap_share']:.0%} of its loading on "
                        f"{comp['overlap_area']:.0%} of the scan); factor ~ "
                        f"{comp['best_source']} ({comp['best_source_cosine']:.2f}), "
                        f"non-additive excess of {comp.get('best_excess')} "
                        f"({comp.get('best_excess_cosine', 0):.2f})",
                        flush=True,
                    )
    _print_table(records)
    (directory / "evaluation.json").write_text(json.dumps(_jsonable(records), indent=1))
    return records


def _print_table(records: list[dict]) -> None:
    """The summary table: per scene, each run's k, ARI and overlap F1, and ARI at true k."""
    by_scene: dict = {}
    for r in records:
        by_scene.setdefault(r["scene"], {})[r["run"]] = r
    runs = [run for run in RUNS if any(run in v for v in by_scene.values())]
    print()
    print("runs: " + ", ".join(runs) + "   (k, ARI, overlap F1 at the decided k; ARI at true k)")
    header = f"{'scene':<10}{'true k':>7}{'k':>10}{'ARI':>21}{'overlap F1':>21}{'ARI@true k':>21}"
    print(header)
    print("-" * len(header))

    def cells(runs_of_scene, key, fmt):
        return "/".join(
            format(runs_of_scene[run][key], fmt) if run in runs_of_scene else "-" for run in runs
        )

    for name, rs in by_scene.items():
        true_k = next(iter(rs.values()))["true_k"]
        print(
            f"{name:<10}{true_k:>7}{cells(rs, 'k', 'd'):>10}{cells(rs, 'ari', '.3f'):>21}"
            f"{cells(rs, 'overlap_f1', '.3f'):>21}{cells(rs, 'ari_at_true_k', '.3f'):>21}"
        )


# -- command line ----------------------------------------------------------------------------
def _outside_repo(path: Path) -> Path:
    """``path`` resolved, or SystemExit if it lies inside the repository."""
    path = path.expanduser().resolve()
    if path == REPO or REPO in path.parents:
        raise SystemExit(f"refusing to write inside the repository: {path}")
    return path


def main(argv=None) -> None:
    """Command line: generate (``--out``) or evaluate (``--evaluate``).

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="generate into DIR")
    parser.add_argument("--evaluate", type=Path, metavar="DIR", help="evaluate the scenes in DIR")
    parser.add_argument("--scenes", nargs="+", choices=list(SCENES), help="default: all")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS), help="default: all")
    parser.add_argument("--dose", type=float, help="override every scene's dose")
    parser.add_argument("--phonons", type=int, help=f"default {SIM['n_phonons']}")
    parser.add_argument("--positions", type=int, help=f"default {len(SIM['probe_offsets_A'])}")
    args = parser.parse_args(argv)
    if args.evaluate is not None:
        evaluate(args.evaluate, scenes=args.scenes, runs=args.runs)
        return
    generate(
        _outside_repo(args.out),
        args.scenes,
        dose=args.dose,
        n_phonons=args.phonons,
        n_positions=args.positions,
    )


if __name__ == "__main__":
    main()
