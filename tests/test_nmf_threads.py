"""Two sweeps in two threads, under numba's workqueue threading layer (its fallback without TBB
or OpenMP), which aborts the interpreter when two threads enter a parallel function at once.

Run in a subprocess, so that an abort fails this test instead of killing pytest.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os
    import threading
    import warnings

    import numba
    import numpy as np

    from hyperspy_nmfdecide.nmf import run_sweep, updates

    # Every HALS update through the parallel kernel (this problem is small enough that all of
    # them would run serially): the case under test is two threads in parallel functions.
    updates.PARALLEL_WORK = 0
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    x = rng.poisson(rng.gamma(1, 5, (300, 3)) @ rng.random((3, 200))).astype(np.float32)
    alone = run_sweep(x, [2, 3, 4], 4, random_state=0, max_iter=60).best_loss
    results, errors = {}, []

    def sweep(seed):
        try:
            results[seed] = run_sweep(x, [2, 3, 4], 4, random_state=seed, max_iter=60).best_loss
        except BaseException as error:  # reported by the main thread
            errors.append(repr(error))

    threads = [threading.Thread(target=sweep, args=(seed,)) for seed in (0, 1, 0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    if os.environ["NUMBA_THREADING_LAYER"] != "default":
        assert numba.threading_layer() == os.environ["NUMBA_THREADING_LAYER"]
    # Each thread's sweep is what it is alone: serialising changes no result.
    assert np.array_equal(results[0], alone), (results[0], alone)
    print("two sweeps in threads: done")
    """
)


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_sweeps_in_two_threads_do_not_abort_the_interpreter(layer):
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done" in done.stdout
