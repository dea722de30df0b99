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


class _ReportLinks:
    """The images, the contents links and the element ids of a report page."""

    def __init__(self, html: str):
        from html.parser import HTMLParser

        links = self

        class _Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                attrs = dict(attrs)
                if tag == "img":
                    links.sources.append(attrs["src"])
                if tag == "a" and attrs.get("href", "").startswith("#"):
                    links.anchors.append(attrs["href"][1:])
                if "id" in attrs:
                    links.ids.append(attrs["id"])

        self.sources, self.anchors, self.ids = [], [], []
        _Parser().feed(html)


@pytest.fixture
def check_report_html():
    """A checker of a written report: every image is a PNG beside index.html, every contents
    link has its target; returns the page's images, links and ids."""

    def check(out_dir, *, figures: bool = False):
        links = _ReportLinks((out_dir / "index.html").read_text(encoding="utf-8"))
        assert links.sources or not figures, "the report has no figures"
        for src in links.sources:
            assert (out_dir / src).is_file(), src
            assert src.endswith(".png") and "/" not in src
        assert links.anchors and set(links.anchors) <= set(links.ids)
        return links

    return check
