"""HyperSpy signal classes that carry the NMF sweep, decision and phase-map methods.

The classes are thin: each method checks its arguments, calls one numerics function and wraps
the result (DESIGN §1).  No arithmetic on patterns happens here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable

import numpy as np
from pyxem.signals import ElectronDiffraction2D, LazyElectronDiffraction2D

from ._utils import require_2d_patterns, resolve_progressbar
from .decide import KRangeWarning, evaluate
from .epattern import SpotTable, reconstruct, register_spots, to_sparse
from .nmf.fingerprint import content_fingerprint, same_fingerprint
from .nmf.sweep import run_sweep
from .phases import N_STAGES
from .prepare import (
    direct_beam,
    direct_beam_mask,
    drop_stale_results,
    prepare_for_nmf,
    preprocessing_record,
)
from .results import (
    METADATA_DECISION,
    METADATA_PHASE_MAPS,
    METADATA_PREPROCESSING,
    METADATA_SWEEP,
    STORED_RESULTS,
    ComponentIndex,
    KDecision,
    NMFSweep,
    PhaseMaps,
)
from .results.base import drop_results

_logger = logging.getLogger(__name__)

__all__ = ["LazyNMFDecideDiffraction2D", "NMFDecideDiffraction2D"]

METADATA_PREPROCESSING_MASK = METADATA_PREPROCESSING + ".signal_mask"


class NMFDecideDiffraction2D(ElectronDiffraction2D):
    """A 4D-STEM signal with multi-restart NMF sweep methods.

    Everything pyxem's :class:`~pyxem.signals.ElectronDiffraction2D` does still works.  Get one
    with ``s.set_signal_type("nmf_decide")`` or ``hs.load(path, signal_type="nmf_decide")``.
    """

    _signal_type = "nmf_decide"

    # The preprocessing chain and the beam finder work on any pyxem Diffraction2D: functions of
    # prepare.py, bound here.
    prepare_for_nmf = prepare_for_nmf
    direct_beam = direct_beam
    direct_beam_mask = direct_beam_mask

    def nmf_sweep(
        self,
        k_range: Iterable[int] = range(2, 16),
        n_restarts: int = 20,
        *,
        solver: str = "hals",
        mode: str = "exact",
        max_iter: int = 200,
        tol: float = 1e-4,
        inner_sweeps: int = 10,
        signal_mask=None,
        navigation_mask=None,
        negative_values: str = "raise",
        random_state: int | np.random.Generator | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_interval: float = 300.0,
        spots: SpotTable | None = None,
        show_progressbar: bool | None = None,
        store: bool = True,
    ) -> NMFSweep:
        """NMF for every k in ``k_range``, ``n_restarts`` random starts each (Uesugi et al. 2021).

        All restarts of all k advance together, one pass over the navigation chunks per
        iteration, so eager and lazy signals take the same path and a lazy scan is never held in
        memory whole.  With a ``dask.distributed`` client active, a lazy signal is swept on that
        cluster: each chunk's work runs on the worker holding it and only factor-sized matrices
        travel (a cluster failure raises ``ClusterError``; see ``checkpoint``).  Per k the
        minimum-MSE run is kept; the MSE of every run is recorded.  One deterministic
        NNDSVD-started run per k is reported beside the random ones (and kept when it wins).

        Parameters
        ----------
        k_range : iterable of int
            Numbers of components to fit.
        n_restarts : int
            Random non-negative starts per k.
        solver : {"hals", "als", "mu"}
            ``"hals"`` (fastest to a low MSE), ``"als"`` (Uesugi's nine steps) or ``"mu"``
            (Lee–Seung multiplicative updates, as in Cao et al.).
        mode : {"exact", "fast"}
            ``"fast"`` iterates on a randomised compression of the data, then evaluates every run
            exactly and polishes the best three per k on the data.  The MSE reported is exact.
        max_iter : int
            Maximum passes over the data per run.
        tol : float
            A run stops when its MSE falls by less than ``tol`` (relative) in one pass.
        inner_sweeps : int
            HALS only: sweeps over the components per factor update from the products of one
            pass over the data (accelerated HALS, Gillis & Glineur 2012); 1 is plain HALS.
            Ten sweeps cost a few per cent of a pass and roughly halve the passes a run needs.
        signal_mask : None, False, numpy.ndarray or hyperspy signal
            Pixels of the diffraction plane left out of the fit (``True`` = excluded); they are
            zero in the factors and the model.  ``None`` (default): the beam mask recorded by
            :meth:`prepare_for_nmf` (``beam_mask_radius``) if there is one, else the direct
            beam found on the mean pattern, its radius measured from its own profile
            (:meth:`direct_beam`; nothing is masked when no beam stands out).  The beam is
            left out because crystals take their counts from it: its weight at a probe falls
            as theirs rise, which no non-negative component represents (see the README).
            ``False``: every pixel is fitted.  An array or signal: that mask.  What was
            masked and why is recorded in ``sweep.params["signal_mask"]``.
        navigation_mask : numpy.ndarray or hyperspy signal, optional
            Boolean over the scan, ``True`` = probe excluded (e.g. vacuum).  Excluded probes are
            dropped from the fit and have zero loadings.
        negative_values : {"raise", "clip"}
            What to do with negative intensities (e.g. after background subtraction).
        random_state : int, numpy.random.Generator or None
            The same value gives identical results.  Run r at k uses
            ``SeedSequence(seed, spawn_key=(k, r))``, so it does not depend on the k range.
        checkpoint : str or path, optional
            A directory where the sweep stores every finished batch of restarts as it
            completes, and a snapshot of the running one every ``checkpoint_interval``
            seconds.  After an interruption (Ctrl-C, a killed kernel, a lost cluster) run the
            same call again: it resumes there and returns exactly the result of an
            uninterrupted sweep.  A checkpoint written for other data or other parameters is
            refused with an error.
        checkpoint_interval : float
            Seconds between snapshots of the running batch.
        spots : SpotTable, optional
            Factorise the spots registered by :meth:`register_spots` instead of the patterns:
            the ePattern reconstruction as a sparse matrix, so every pass costs in proportion
            to the pixels inside spots, not to all pixels.  Factors, loadings and calibrations
            are those of this signal; ``get_model`` then reconstructs the redrawn patterns.
        show_progressbar : bool or None
            None follows ``hs.preferences.General.show_progressbar``.
        store : bool
            Keep the sweep in ``metadata`` (it is then saved with the signal and read by
            ``decide_k``); the data are never modified.

        Returns
        -------
        NMFSweep

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> s = simulated_scan(nav_shape=(10, 10), pattern_size=32, random_state=0).signal
        >>> sweep = s.nmf_sweep(range(2, 5), n_restarts=4, random_state=0)
        >>> sweep.loss.shape
        (3, 4)
        >>> sweep.get_loadings(3).axes_manager.signal_shape == s.axes_manager.navigation_shape
        True
        """
        require_2d_patterns(self, "nmf_sweep")
        k_values = _k_values(k_range)
        nav_dim = self.axes_manager.navigation_dimension
        signal_mask, mask_record = self._sweep_signal_mask(signal_mask, self.data.shape[nav_dim:])
        navigation_mask = _as_mask(navigation_mask, self.data.shape[:nav_dim], "navigation_mask")
        if spots is None:
            matrix, chunk_rows = self._as_matrix(*self._matrix_shape())
        else:
            self._check_spots(spots)
            matrix, chunk_rows = to_sparse(spots), None
        with _progressbar(
            show_progressbar, None, "NMF sweep, passes over the data", unit="pass"
        ) as bar:
            arrays = run_sweep(
                matrix,
                k_values,
                n_restarts,
                solver=solver,
                mode=mode,
                max_iter=max_iter,
                tol=tol,
                inner_sweeps=inner_sweeps,
                row_mask=_ravel(navigation_mask),
                col_mask=_ravel(signal_mask),
                random_state=random_state,
                negative_values=negative_values,
                chunk_rows=chunk_rows,
                checkpoint=checkpoint,
                checkpoint_interval=checkpoint_interval,
                on_pass=bar.update,
            )
        params = {
            "solver": solver,
            "mode": mode,
            "max_iter": int(max_iter),
            "tol": float(tol),
            "inner_sweeps": int(inner_sweeps),
            "n_restarts": int(n_restarts),
            "random_state": str(arrays.entropy),
            "negative_values": negative_values,
            "lazy": bool(self._lazy),
            "chunk_rows": chunk_rows,
            "input": "patterns" if spots is None else "spots (sparse)",
            "signal_mask": mask_record,
            # What binds every result of this sweep to these data (None for a spot table:
            # its fingerprint is of the spots, not of the patterns).
            "data_fingerprint": dict(arrays.fingerprint) if spots is None else None,
        }
        sweep = NMFSweep(
            arrays=arrays,
            axes=list(self.axes_manager.as_dictionary().values()),
            navigation_mask=navigation_mask,
            signal_mask=signal_mask,
            params=params,
            source_metadata=self._source_metadata(),
        )
        if store:
            # What was read from an earlier sweep does not describe this one.
            drop_results(self, tuple(p for p in STORED_RESULTS if p != METADATA_SWEEP))
            sweep.store(self)
        return sweep

    def get_nmf_sweep(self) -> NMFSweep:
        """The sweep stored by the last :meth:`nmf_sweep` (also after save and load).

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> s = simulated_scan(nav_shape=(6, 6), pattern_size=32, random_state=0).signal
        >>> _ = s.nmf_sweep(range(1, 3), n_restarts=2, random_state=0)
        >>> s.get_nmf_sweep().k_values.tolist()
        [1, 2]
        """
        return self._bound(NMFSweep.from_signal(self))

    def decide_k(
        self,
        sweep: NMFSweep | None = None,
        *,
        method: str = "noise",
        n_sample: int = 128,
        margin: float | None = None,
        binning: int | None = None,
        random_state: int = 0,
        show_progressbar: bool | None = None,
        store: bool = True,
    ) -> KDecision:
        """Decide the number of components from a sweep, in two levels (Cao et al.).

        Level 1 is the elbow of the minimum-MSE curve.  Level 2 asks where extra components
        start fitting noise (the decision with ``method="noise"``, the default; the README
        gives its accuracy on two ground-truth suites): the noise of every binned pixel is
        measured between neighbouring probes, with its mean–variance relation (a detector's
        gain, dark offset and readout noise; :attr:`KDecision.noise`), and the components of
        the data that rise above the largest singular value of noise at that level are
        counted.  Of the components of the fit at that k, those that are the same phase at
        another thickness (variants) or spots that exist only where two phases overlap
        (interactions; :func:`hyperspy_nmfdecide.components.component_roles`) do not count.
        When the noise edge cannot be trusted (noise-free data, a measurement that does not
        match the data's noise floor), the decision falls back on the stability of the
        factorisations and ``reason`` says so.  Beside it: IQA
        metrics between raw and reconstructed patterns and between neighbouring k, the
        residual's NSD against the measured noise, and the share of restarts reaching the
        minimum.

        Parameters
        ----------
        sweep : NMFSweep, optional
            Default: the sweep stored by the last :meth:`nmf_sweep`.
        method : {"noise", "elbow", "iqa"}
            What decides; the evidence of every level is computed in any case.
        n_sample : int
            Probes (a seeded sample) on which the IQA metrics are computed.
        margin : float, optional
            Factor by which a component must clear the noise edge (``method="noise"``);
            default four standard deviations of the edge's Tracy-Widom fluctuation for this
            scan size (about 1.07 for 32 × 32 probes), at least 1.03.
        binning : int, optional
            Bin side of the patterns for the noise spectrum (default: binned to about 16
            pixels a side; spots span several pixels, so binning lifts weak components out of
            the noise without changing how many there are).
        random_state : int
            Seed of the sample and of the noise spectrum (an int, so that the decision is
            reproducible).
        show_progressbar : bool or None
            None follows ``hs.preferences.General.show_progressbar``.
        store : bool
            Keep the decision in ``metadata`` (saved with the signal, read by
            :meth:`get_k_decision` and :meth:`phase_maps`).

        Returns
        -------
        KDecision
            ``k``, ``elbow_k``, ``reason``, ``table``, ``plot()``.  A warning suggests a new k
            range when the sweep does not bracket the decision.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> scan = simulated_scan(nav_shape=(16, 16), pattern_size=32, n_crystals=2,
        ...                       dose=2000, random_state=0)
        >>> s = scan.signal
        >>> _ = s.nmf_sweep(range(1, 6), n_restarts=4, random_state=0)
        >>> decision = s.decide_k()
        >>> decision.k == scan.true_k
        True
        """
        sweep = self._sweep_for(sweep)
        matrix, chunk_rows = self._as_matrix(*self._matrix_shape())
        with _progressbar(show_progressbar, len(sweep.k_values) + 2, "decide_k") as bar:
            decision = evaluate(
                sweep.arrays,
                matrix,
                pattern_shape=self.data.shape[self.axes_manager.navigation_dimension :],
                scan_shape=_scan_shape(self),
                chunk_rows=chunk_rows,
                method=method,
                n_sample=n_sample,
                margin=margin,
                binning=binning,
                random_state=random_state,
                progress=bar.update,
                **sweep.matrix_options(),
            )
        result = KDecision.from_decision(decision)
        result.params["data_fingerprint"] = sweep.data_fingerprint
        result.navigation_mask, result.signal_mask = sweep.navigation_mask, sweep.signal_mask
        if result.suggested_range is not None:
            low, high = result.suggested_range
            warnings.warn(
                f"The sweep's k range ({sweep.k_values[0]}..{sweep.k_values[-1]}) does not "
                "bracket the decision, or does not hold it: run "
                f"nmf_sweep(range({low}, {high + 1})) and decide again.",
                KRangeWarning,
                stacklevel=2,
            )
        if store:
            result.store(self)
        return result

    def get_k_decision(self) -> KDecision:
        """The decision stored by the last :meth:`decide_k` (also after save and load)."""
        return self._bound(KDecision.from_signal(self))

    def phase_maps(
        self,
        k: int | None = None,
        *,
        threshold: str | float = "otsu",
        min_size: int | None = None,
        background: int | str | None = "auto",
        sweep: NMFSweep | None = None,
        show_progressbar: bool | None = None,
        store: bool = True,
    ) -> PhaseMaps:
        """Phase maps from the kept factorisation at k: thresholds, overlaps, raw clustering.

        The last step of Cao et al.'s plan: each loading map is thresholded into a component
        mask, the background component is recognised and kept out, probes where two or more
        components hold are overlaps, components are followed to k − 1 and k + 1, every probe
        gets a phase label, and the raw patterns are averaged per phase (one pass over the
        data) and compared with the reconstruction.

        Parameters
        ----------
        k : int, optional
            Default: the stored decision of :meth:`decide_k`.
        threshold : {"otsu", "otsu-level"} or float
            See :func:`hyperspy_nmfdecide.phasemaps.compute_phase_maps`.
        min_size : int, optional
            Specks smaller than this many probes are removed.
        background : "auto", int or None
            The background component, recognised, named, or none.
        sweep : NMFSweep, optional
            Default: the stored sweep.
        show_progressbar : bool or None
            None follows ``hs.preferences.General.show_progressbar``.
        store : bool
            Keep the result in ``metadata`` (read back by :meth:`get_phase_maps`).

        Returns
        -------
        PhaseMaps

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> s = simulated_scan(nav_shape=(12, 12), pattern_size=32, n_crystals=2, dose=5000,
        ...                    random_state=0).signal
        >>> _ = s.nmf_sweep(range(2, 5), n_restarts=3, random_state=0)
        >>> pm = s.phase_maps(k=3)
        >>> pm.labels.axes_manager.signal_shape == s.axes_manager.navigation_shape
        True
        """
        sweep = self._sweep_for(sweep)
        if k is None:
            if not self.metadata.has_item(METADATA_DECISION):
                raise RuntimeError(
                    "phase_maps needs k: pass k=... or run s.decide_k() first "
                    f"(available k: {sweep.k_values.tolist()})"
                )
            k = self._stored_of(KDecision, sweep).k
        matrix, chunk_rows = self._as_matrix(*self._matrix_shape())
        with _progressbar(show_progressbar, N_STAGES, "phase maps") as bar:
            result = PhaseMaps.from_sweep(
                sweep,
                k,
                matrix,
                threshold=threshold,
                min_size=min_size,
                background=background,
                chunk_rows=chunk_rows,
                progress=bar.update,
            )
        if store:
            result.store(self)
        return result

    def get_phase_maps(self) -> PhaseMaps:
        """The phase maps stored by the last :meth:`phase_maps` (also after save and load)."""
        return self._bound(PhaseMaps.from_signal(self))

    def index_components(
        self,
        phases,
        k: int | None = None,
        *,
        n_best: int = 3,
        resolution: float = 1.0,
        refine: bool = True,
        background_score: float = 0.1,
        show_progressbar: bool | None = None,
        store: bool = True,
    ) -> ComponentIndex:
        """Phase and orientation of every NMF factor at k, by pyxem's polar template matching.

        Each factor of the stored sweep is reprojected to polar coordinates and matched against
        a diffsims template bank of every phase over its reduced fundamental zone (orix), as
        pyxem's ``get_orientation`` does; the best match is then refined on the factor: its
        angle about the beam from the spot positions (a 2-D Procrustes fit of the template's
        spots), its tilt from the integrated spot intensities; see
        :mod:`hyperspy_nmfdecide.orientation` and :mod:`hyperspy_nmfdecide.refinement`.  The
        beam energy is ``metadata.Acquisition_instrument.TEM.beam_energy``; the signal axes
        must be in Å⁻¹ with 0 on the direct beam.  With phase maps at k, ``idx.crystal_map(pm)``
        gives the crystals at every probe (an orix CrystalMap), ``idx.ipf_map(pm)`` their IPF
        colours and ``idx.plot(pm)`` both.

        Parameters
        ----------
        phases : list of orix.crystal_map.Phase or CIF paths
            The candidate phases (with structures).
        k : int, optional
            Default: the stored decision's k.
        n_best : int
            Candidates kept per phase.
        resolution : float
            Angular step of the template grid, degrees.
        refine : bool
            Refine each crystal's angle about the beam on its spot positions (the grid steps
            1° in plane) and its tilt, within 2° of the match, on its spot intensities; False
            keeps the grid's orientation (within ``resolution / 2`` in tilt).  A zone-axis
            pattern hardly tells an orientation from the same turned 180° about the beam
            (Friedel's law; for cubic crystals that turn about [112] is the 60° [111] twin):
            look at the candidates when the two score alike.
        background_score : float
            Without stored phase maps at k, components scoring below this are the background.
        show_progressbar : bool or None
            Accepted for symmetry with the other methods; the matching of k factors is quick.
        store : bool
            Keep the result in ``metadata`` (``NMFDecide.component_index``).

        Returns
        -------
        ComponentIndex

        Examples
        --------
        A seeded scan of an Fe and an Au crystal is indexed in ``tests/test_orientation.py``
        (a few seconds): ``s.index_components([crystal_phase("Fe"), crystal_phase("Au")])``.
        """
        from . import orientation as om

        sweep = self._sweep_for(None)
        if k is None:
            if not self.metadata.has_item(METADATA_DECISION):
                raise RuntimeError("index_components needs k: pass k=... or run s.decide_k()")
            k = self._stored_of(KDecision, sweep).k
        pm = (
            self._stored_of(PhaseMaps, sweep)
            if self.metadata.has_item(METADATA_PHASE_MAPS)
            else None
        )
        result = ComponentIndex.from_sweep(
            sweep,
            phases,
            int(k),
            beam_energy=om.beam_energy_of(self.metadata.as_dictionary()),
            sig_axes=[a.get_axis_dictionary() for a in self.axes_manager.signal_axes[::-1]],
            n_best=n_best,
            resolution=resolution,
            refine=refine,
            background_index=pm.background_index if pm is not None and pm.k == int(k) else None,
            background_score=background_score,
        )
        if store:
            result.store(self)
        return result

    def register_spots(
        self,
        *,
        prominence: float = 4.0,
        min_distance: int = 2,
        max_radius: float = 4.0,
        exclude=None,
        show_progressbar: bool | None = None,
    ) -> SpotTable:
        """Register the Bragg spots of every pattern (ePattern; Folastre et al. 2024).

        Per pattern, peaks rising more than ``prominence`` × the pattern's Poisson noise above
        its local background, refined to sub-pixel positions by centre of mass, a radius from
        the spot's width and an intensity from the mean value inside it.  A lazy scan is read
        one chunk at a time.  See :func:`hyperspy_nmfdecide.epattern.register_spots`.

        Parameters
        ----------
        prominence, min_distance, max_radius, exclude
            As :func:`~hyperspy_nmfdecide.epattern.register_spots`.
        show_progressbar : bool or None
            None follows ``hs.preferences.General.show_progressbar``.

        Returns
        -------
        SpotTable
            The latent table (probe, x, y, radius, intensity) with its compression ratio;
            :meth:`epattern` redraws it, ``nmf_sweep(spots=table)`` factorises it as a sparse
            matrix.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> s = simulated_scan(nav_shape=(6, 6), pattern_size=32, random_state=0).signal
        >>> table = s.register_spots()
        >>> table.nav_shape, bool(table.compression_ratio > 1)
        ((6, 6), True)
        """
        require_2d_patterns(self, "register_spots")
        n_patterns = self._matrix_shape()[0]
        with _progressbar(show_progressbar, n_patterns, "Registering spots", unit="pattern") as bar:
            return register_spots(
                self.data,
                prominence=prominence,
                min_distance=min_distance,
                max_radius=max_radius,
                exclude=exclude,
                show_progress=lambda done, _: bar.update(done - bar.n),
            )

    def epattern(self, spots: SpotTable | None = None, **register_options):
        """Patterns redrawn from their registered spots only (ePattern reconstruction).

        Every spot is drawn as a disc of its radius and intensity, so relative intensities are
        kept and everything between spots (noise, diffuse background) is gone.  The result is
        a new signal of this class with the same calibrations, the step recorded in
        ``metadata.NMFDecide.preprocessing.steps`` (spots, compression ratio).  It is held in
        memory: for a scan too large for that, sweep the table itself,
        ``s.nmf_sweep(spots=table)``.

        Parameters
        ----------
        spots : SpotTable, optional
            From :meth:`register_spots`; registered here (with ``register_options``) if None.
        **register_options
            Passed to :meth:`register_spots`.

        Examples
        --------
        >>> from hyperspy_nmfdecide.data import simulated_scan
        >>> s = simulated_scan(nav_shape=(6, 6), pattern_size=32, random_state=0).signal
        >>> clean = s.epattern()
        >>> clean.data.shape == s.data.shape
        True
        >>> clean.metadata.NMFDecide.preprocessing.steps[-1]["step"]
        'epattern'
        """
        if spots is None:
            spots = self.register_spots(**register_options)
        elif register_options:
            raise TypeError("give either spots or registration options, not both")
        self._check_spots(spots)
        drawn = reconstruct(spots)
        if self._lazy:
            import dask.array as da

            drawn = da.from_array(drawn, chunks=self.data.chunks)
        out = self._deepcopy_with_new_data(drawn)
        drop_stale_results(out)
        steps = preprocessing_record(self) + [
            {
                "step": "epattern",
                "n_spots": spots.n_spots,
                "spots_per_pattern_median": float(np.median(spots.spots_per_pattern)),
                "compression_ratio": float(spots.compression_ratio),
                **spots.params,
            }
        ]
        out.metadata.set_item(METADATA_PREPROCESSING + ".steps", steps)
        out.title = f"{self.metadata.General.title} (ePattern)".strip()
        return out

    # -- helpers -----------------------------------------------------------------------------
    def _check_spots(self, spots) -> None:
        if not isinstance(spots, SpotTable):
            raise TypeError(f"spots must be a SpotTable (from register_spots), got {spots!r}")
        nav_dim = self.axes_manager.navigation_dimension
        shape = self.data.shape
        if (
            tuple(spots.nav_shape) != shape[:nav_dim]
            or tuple(spots.signal_shape) != shape[nav_dim:]
        ):
            raise ValueError(
                f"spots were registered on a scan of shape {tuple(spots.nav_shape)} × "
                f"{tuple(spots.signal_shape)}, this signal is {shape[:nav_dim]} × {shape[nav_dim:]}"
            )

    def _sweep_signal_mask(self, signal_mask, sig_shape) -> tuple[np.ndarray | None, dict]:
        """The sweep's pixel mask and a record of where it came from (``signal_mask`` rules)."""
        if signal_mask is False:
            return None, {"source": "none", "n_pixels": 0}
        if signal_mask is None and self.metadata.has_item(METADATA_PREPROCESSING_MASK):
            _logger.info("nmf_sweep: using the beam mask recorded by prepare_for_nmf")
            mask = _as_mask(self.metadata.get_item(METADATA_PREPROCESSING_MASK), sig_shape, "")
            return mask, {"source": "prepare_for_nmf", "n_pixels": int(mask.sum())}
        if signal_mask is None:
            beam = self.direct_beam()
            mask = beam.mask(sig_shape)
            record = {"source": "automatic", "beam": beam.to_dict()}
            record["n_pixels"] = 0 if mask is None else int(mask.sum())
            _logger.info("nmf_sweep: %s", beam.reason)
            return mask, record
        if signal_mask is True:
            raise TypeError("signal_mask must be None, False or a boolean mask, got True")
        mask = _as_mask(signal_mask, sig_shape, "signal_mask")
        return mask, {"source": "given", "n_pixels": int(mask.sum())}

    def _matrix_shape(self) -> tuple[int, int]:
        nav_dim = self.axes_manager.navigation_dimension
        shape = self.data.shape
        return int(np.prod(shape[:nav_dim], dtype=int)), int(np.prod(shape[nav_dim:], dtype=int))

    def _sweep_for(self, sweep: NMFSweep | None) -> NMFSweep:
        """The given sweep, or the stored one, checked to belong to this signal's data."""
        sweep = self.get_nmf_sweep() if sweep is None else sweep
        if not isinstance(sweep, NMFSweep):
            raise TypeError(f"sweep must be an NMFSweep, got {type(sweep).__name__}")
        expected = tuple(int(a["size"]) for a in sweep.axes)
        if tuple(self.data.shape) != expected:
            raise ValueError(
                f"the sweep was run on data of shape {expected}, this signal has "
                f"{tuple(self.data.shape)}"
            )
        return self._bound(sweep)

    def _bound(self, result):
        """``result`` if it was computed from this signal's data, else a ValueError.

        Every result records the fingerprint of the data it came from
        (``result.data_fingerprint``: the sweep's, a seeded projection of the kept probes and
        pixels that any reordering or edit changes) and the masks it was taken with; a result of
        older files, or of a spot table, has none and is trusted.
        """
        stored = result.data_fingerprint
        if stored is None:
            return result
        matrix, _ = self._as_matrix(*self._matrix_shape())
        # Negative values clipped: the sweep either clipped them or had none to clip.
        current = content_fingerprint(
            matrix,
            row_mask=_ravel(result.navigation_mask),
            col_mask=_ravel(result.signal_mask),
            negative_values="clip",
        )
        if same_fingerprint(stored, current):
            return result
        raise _other_data(result)

    def _stored_of(self, result_type, sweep: NMFSweep):
        """The stored result of ``result_type``, checked against a sweep already bound to these
        data: the fingerprints are compared, with no second pass over the data."""
        result = result_type.from_signal(self)
        stored = result.data_fingerprint
        if stored is None or same_fingerprint(stored, sweep.data_fingerprint):
            return result
        raise _other_data(result)

    def _as_matrix(self, n_probe: int, n_pixel: int):
        """The data as an (n_probe, n_pixel) view: numpy, or dask in navigation row chunks."""
        if not self._lazy:
            return self.data.reshape(n_probe, n_pixel), None
        data = self.data
        nav_dim = self.axes_manager.navigation_dimension
        # Whole patterns and whole fast-scan rows per chunk, so the reshape stays blockwise;
        # as many rows as keep a chunk near the probes of the user's own chunks.
        probes_per_chunk = int(np.prod([c[0] for c in data.chunks[:nav_dim]], dtype=int))
        probes_per_row = int(np.prod(data.shape[1:nav_dim], dtype=int))
        rows = max(1, probes_per_chunk // probes_per_row) if nav_dim else 1
        chunks = (rows,) + (-1,) * (data.ndim - 1) if nav_dim else (-1,) * data.ndim
        data = data.rechunk(chunks)
        matrix = data.reshape(n_probe, n_pixel)
        return matrix, int(matrix.chunks[0][0])

    def _source_metadata(self) -> dict:
        md = self.metadata.as_dictionary()
        return {
            key: md[key] for key in ("General", "Signal", "Acquisition_instrument") if key in md
        }


class LazyNMFDecideDiffraction2D(LazyElectronDiffraction2D, NMFDecideDiffraction2D):
    """Lazy (dask-backed) twin of :class:`NMFDecideDiffraction2D`."""


def _other_data(result) -> ValueError:
    """The error for a stored result of other data than the signal's."""
    return ValueError(
        f"the {type(result).__name__} at hand was computed from other data than this "
        "signal's (the data were reordered, sliced, scaled or edited since, or it belongs "
        f"to another signal): run s.{result.made_by}() on this signal again"
    )


def _k_values(k_range) -> list:
    """``k_range`` as a list, or a TypeError that shows what is expected."""
    if isinstance(k_range, (str, bytes)) or not isinstance(k_range, Iterable):
        raise TypeError(
            f"k_range must be an iterable of numbers of components such as range(2, 16) or "
            f"[2, 3, 4], got {k_range!r}"
        )
    return list(k_range)


def _scan_shape(signal) -> tuple[int, int] | None:
    """(ny, nx) of a 2-D scan in array order, or None for another navigation dimension."""
    shape = signal.data.shape[: signal.axes_manager.navigation_dimension]
    return tuple(int(n) for n in shape) if len(shape) == 2 else None


@contextlib.contextmanager
def _progressbar(show_progressbar: bool | None, total: int | None, desc: str, **options):
    """HyperSpy's progress bar (closed however the block ends)."""
    from hyperspy.external.progressbar import progressbar

    bar = progressbar(
        total=total, disable=not resolve_progressbar(show_progressbar), desc=desc, **options
    )
    try:
        yield bar
    finally:
        bar.close()


def _ravel(mask: np.ndarray | None) -> np.ndarray | None:
    return None if mask is None else np.asarray(mask).ravel()


def _as_mask(mask, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    """A boolean numpy mask in array order from a numpy array or a HyperSpy signal."""
    if mask is None:
        return None
    if hasattr(mask, "axes_manager"):
        data = mask.data
        mask = data.compute() if hasattr(data, "compute") else data
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"{name} must be boolean (True = excluded), got dtype {mask.dtype}")
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} has shape {mask.shape}, expected {tuple(shape)}")
    if mask.all():
        raise ValueError(f"{name} excludes everything: nothing is left to factorise")
    return mask
