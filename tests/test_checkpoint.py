"""Checkpoint and resume of the sweep: an interrupted sweep ends exactly as an uninterrupted one."""

import itertools
import os

import numpy as np
import pytest

from hyperspy_nmfdecide.nmf import run_sweep
from hyperspy_nmfdecide.nmf.checkpoint import CheckpointError

# Capped at a few tens of passes to stay fast: runs stopping at max_iter is expected here and
# the ConvergenceWarning that says so is not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def spotty(n=200, p=80, k=3, seed=0):
    rng = np.random.default_rng(seed)
    h = np.full((k, p), 0.05)
    for j in range(k):
        h[j, rng.choice(p, 6, replace=False)] = rng.uniform(1, 3, 6)
    return rng.poisson(rng.gamma(0.8, 20.0, (n, k)) @ h).astype(np.float32)


# Small batches (a few runs each), a snapshot after every pass.
OPTIONS = {
    "k_values": [1, 2, 3],
    "n_restarts": 3,
    "random_state": 0,
    "tol": 1e-5,
    "max_iter": 40,
    "batch_bytes": 4 * (200 + 3 * 80) * 12,
    "checkpoint_interval": 0,
}


def interrupt_at(n_pass: int):
    """An on_pass callback that presses Ctrl-C at pass ``n_pass``."""
    counter = itertools.count(1)

    def on_pass():
        if next(counter) == n_pass:
            raise KeyboardInterrupt

    return on_pass


def assert_same_sweep(a, b):
    for name in ("loss", "n_iter", "converged", "nndsvd_loss", "best_run", "pca_loss"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for k in a.factors:
        np.testing.assert_array_equal(a.factors[k], b.factors[k])
        np.testing.assert_array_equal(a.loadings[k], b.loadings[k])
    for history_a, history_b in zip(a.loss_history, b.loss_history):
        np.testing.assert_array_equal(history_a, history_b)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_interrupted_twice_then_resumed_equals_uninterrupted(tmp_path, mode):
    x = spotty()
    reference = run_sweep(x, mode=mode, **OPTIONS)
    # Interrupted in the first batch (mid-fit, from a snapshot), then in a later one.
    for n_pass in (14, 40):
        with pytest.raises(KeyboardInterrupt):
            run_sweep(x, mode=mode, checkpoint=tmp_path, on_pass=interrupt_at(n_pass), **OPTIONS)
    assert any(name.endswith(".state.npz") for name in os.listdir(tmp_path))
    resumed = run_sweep(x, mode=mode, checkpoint=tmp_path, **OPTIONS)
    assert_same_sweep(resumed, reference)
    # A finished checkpoint answers again without fitting anything.
    passes = []
    again = run_sweep(
        x, mode=mode, checkpoint=tmp_path, on_pass=lambda: passes.append(1), **OPTIONS
    )
    assert_same_sweep(again, reference)
    assert len(passes) <= 12  # the SVD's passes and the final MSE, no iteration


def test_a_sweep_without_seed_resumes_with_the_seed_it_drew(tmp_path):
    x = spotty()
    options = OPTIONS | {"random_state": None}
    with pytest.raises(KeyboardInterrupt):
        run_sweep(x, checkpoint=tmp_path, on_pass=interrupt_at(30), **options)
    resumed = run_sweep(x, checkpoint=tmp_path, **options)
    assert_same_sweep(resumed, run_sweep(x, **(OPTIONS | {"random_state": resumed.entropy})))


def test_checkpoint_of_other_data_or_parameters_is_refused(tmp_path):
    x = spotty()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(x, checkpoint=tmp_path, on_pass=interrupt_at(20), **OPTIONS)
    with pytest.raises(CheckpointError, match="squared_norm"):
        run_sweep(spotty(seed=1), checkpoint=tmp_path, **OPTIONS)
    with pytest.raises(CheckpointError, match="n_restarts"):
        run_sweep(x, checkpoint=tmp_path, **(OPTIONS | {"n_restarts": 4}))
    mask = np.zeros(x.shape[1], dtype=bool)
    mask[3] = True
    with pytest.raises(CheckpointError, match="masks"):
        run_sweep(x, checkpoint=tmp_path, col_mask=mask, **OPTIONS)


def test_damaged_checkpoint_file_is_refused(tmp_path):
    x = spotty()
    with pytest.raises(KeyboardInterrupt):
        run_sweep(x, checkpoint=tmp_path, on_pass=interrupt_at(30), **OPTIONS)
    saved = sorted(tmp_path.glob("*.npz"))
    assert saved, "a snapshot is taken after every pass"
    saved[0].write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="damaged"):
        run_sweep(x, checkpoint=tmp_path, **OPTIONS)


def test_unwritable_checkpoint_path_is_refused(tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="cannot be written"):
        run_sweep(spotty(), checkpoint=blocker / "checkpoint", **OPTIONS)
