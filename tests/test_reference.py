"""Seeded results stay the same when the code is reorganised.

``tests/data/reference_results.npz`` holds what the default workflow (``nmf_sweep`` →
``decide_k`` → ``phase_maps``) gave on two seeded simulated scans when it was written. A change
that moves code must leave them as they were; a change that means to alter a result regenerates
the file (``python tests/test_reference.py``) and says why in its commit message.
"""

from pathlib import Path

import numpy as np
import pytest

from hyperspy_nmfdecide.data import simulated_scan

REFERENCE = Path(__file__).parent / "data" / "reference_results.npz"

SCANS = {
    "overlapping": {"nav_shape": (16, 14), "pattern_size": 32, "n_crystals": 3},
    "physics": {
        "nav_shape": (14, 12),
        "pattern_size": 32,
        "n_crystals": 2,
        "dose": 300.0,
        "beam_depletion": True,
        "detector": {"gain": 3.0, "offset": 10.0, "readout_noise": 2.0},
        "descan": 0.5,
        "dynamical": 0.3,
    },
}


def reference_results() -> dict[str, np.ndarray]:
    """Run the default workflow on each reference scan; return its results as named arrays."""
    results = {}
    for name, options in SCANS.items():
        scan = simulated_scan(random_state=5, **options)
        s = scan.signal
        sweep = s.nmf_sweep(k_range=range(2, 6), n_restarts=3, random_state=0)
        decision = s.decide_k()
        pm = s.phase_maps()
        results[f"{name}/pattern_sums"] = np.asarray(s.data, dtype=float).sum(axis=(-2, -1))
        results[f"{name}/loss"] = sweep.loss
        results[f"{name}/signal_mask"] = sweep.signal_mask
        for k in sweep.k_values:
            results[f"{name}/factors_{k}"] = sweep.get_factors(int(k)).data
            results[f"{name}/loadings_{k}"] = sweep.get_loadings(int(k)).data
        results[f"{name}/decision_k"] = np.array(decision.k)
        results[f"{name}/noise_ratio"] = decision.noise_ratio
        results[f"{name}/phase_k"] = np.array(pm.k)
        results[f"{name}/labels"] = pm.label_array
        results[f"{name}/overlap"] = pm.overlap_array
        results[f"{name}/raw_means"] = pm.raw_mean_array
    return results


@pytest.fixture(scope="module")
def computed():
    return reference_results()


@pytest.mark.parametrize("name", list(SCANS))
def test_workflow_results_match_the_reference(computed, name):
    with np.load(REFERENCE) as stored:
        keys = [key for key in stored.files if key.startswith(f"{name}/")]
        assert sorted(keys) == sorted(key for key in computed if key.startswith(f"{name}/"))
        for key in keys:
            expected, actual = stored[key], computed[key]
            if expected.dtype.kind in "biu":
                np.testing.assert_array_equal(actual, expected, err_msg=key)
            else:
                # Bit for bit on the machine that wrote the file; the tolerance only absorbs
                # another CPU's last-bit differences in the vectorised maths, amplified by
                # a few hundred solver iterations.
                np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-9, err_msg=key)


if __name__ == "__main__":
    np.savez_compressed(REFERENCE, **reference_results())
    print(f"wrote {REFERENCE}")
