"""Test-wide settings: Agg backend, no progress bars, a temporary working directory."""

import matplotlib
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _quiet_and_isolated(tmp_path, monkeypatch):
    """Run each test in its own directory without progress bars, then close its figures."""
    import matplotlib.pyplot as plt
    from hyperspy.defaults_parser import preferences

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(preferences.General, "show_progressbar", False)
    yield
    plt.close("all")


@pytest.fixture(params=[False, True], ids=["eager", "lazy"])
def lazy(request) -> bool:
    """Parametrise a test over eager and lazy signals."""
    return request.param
