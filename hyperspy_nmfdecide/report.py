"""Self-contained HTML reports: an ``index.html``, its PNG figures and a ``summary.json``.

:class:`Report` is a small builder: each capability adds sections (a text, figures, a table) and
JSON-ready entries to :attr:`Report.summary`; :meth:`Report.write` renders everything.
:func:`sweep_section` adds what an NMF sweep shows (the data, how it was prepared, the MSE-vs-k
plot and table, the parameters and the factors with their loading maps per k),
:func:`preprocessing_section` on its own the preparation, :func:`decision_section` the decision
of k and its evidence, :func:`phase_section` the phase maps and :func:`truth_section` the
ground truth of a simulated scan.  The figures come from :mod:`hyperspy_nmfdecide.plot`.

Examples
--------
>>> import matplotlib.pyplot as plt
>>> report = Report("report_dir", "My scan")
>>> fig, ax = plt.subplots()
>>> _ = report.add_section("Notes", text="a < b", figures=[("a plot", fig)])
>>> report.write().name
'index.html'
"""

from __future__ import annotations

import datetime
import html
import json
import logging
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._utils import to_jsonable
from .axes import plain_units
from .plot import plot_components, plot_data_overview, plot_true_labels, plot_true_sources
from .virtual_detectors import calibrate_detectors, find_virtual_detectors

_logger = logging.getLogger(__name__)

__all__ = [
    "DPI",
    "MAX_SHOW_K",
    "NO_PREPROCESSING",
    "Report",
    "Section",
    "decision_section",
    "environment_info",
    "phase_section",
    "preprocessing_section",
    "slugify",
    "sweep_section",
    "truth_section",
]

#: By default :func:`sweep_section` draws factors and loadings for every k up to this one.
MAX_SHOW_K = 8

#: Resolution of the PNG figures.
DPI = 150


# -- the builder ---------------------------------------------------------------------------------
@dataclass
class Section:
    """One section of a :class:`Report`, as rendered (figures already saved as PNG files).

    Attributes
    ----------
    title : str
        Heading (plain text; escaped when rendered).
    anchor : str
        Unique slug, the HTML ``id`` and the prefix of the section's PNG file names.
    level : int
        2 for a section, 3 for a subsection (nested in the table of contents).
    paragraphs : list of str
        Plain-text paragraphs.
    figures : list of tuple of (str, str or None)
        ``(file name, caption)`` of every figure, in order.
    table : list of dict or None
        Rows of the table, column name to value.
    """

    title: str
    anchor: str
    level: int = 2
    paragraphs: list[str] = field(default_factory=list)
    figures: list[tuple[str, str | None]] = field(default_factory=list)
    table: list[dict] | None = None

    @property
    def files(self) -> list[str]:
        """The PNG file names of the section's figures."""
        return [name for name, _ in self.figures]


class Report:
    """An HTML report built section by section.

    Figures are written as PNG files into ``out_dir`` as soon as a section is added (and closed),
    so a long report never holds many figures in memory.  File names are
    ``<section-slug>-<caption-slug>.png`` (or ``-fig<i>``): the same report gives the same names.

    Parameters
    ----------
    out_dir : str or pathlib.Path
        Directory for ``index.html``, ``summary.json`` and the PNG files (created if needed).
    title : str
        Title of the report.

    Attributes
    ----------
    summary : dict
        JSON-ready entries that sections add (numbers, strings, lists, dicts; numpy values are
        converted); written as ``summary.json``.
    sections : list of Section
        The sections, in order.
    """

    def __init__(self, out_dir: str | Path, title: str) -> None:
        self.out_dir = Path(out_dir)
        self.title = str(title)
        self.summary: dict = {}
        self.sections: list[Section] = []
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def add_section(
        self,
        title: str,
        *,
        text: str | Sequence[str] | None = None,
        figures: Iterable | Mapping = (),
        table: Sequence[Mapping] | Mapping[str, Sequence] | None = None,
        level: int = 2,
    ) -> Section:
        """Add a section; its figures are saved at once and closed.

        Parameters
        ----------
        title : str
            Heading, plain text.
        text : str or sequence of str, optional
            Plain text (escaped); blank lines, or the items of a sequence, separate paragraphs.
        figures : iterable or mapping, optional
            matplotlib Figures, ``(caption, Figure)`` pairs, ``(name, caption, Figure)``
            triples, or a mapping caption → Figure.  The PNG file is
            ``<section slug>-<slug of name or caption>.png`` (at most 48 characters of the
            slug), or ``<section slug>-fig<i>.png`` without either.
        table : list of dict or dict of list, optional
            Rows (column → value) or columns (column → values, all the same length).
        level : {2, 3}
            3 makes a subsection of the previous section.

        Returns
        -------
        Section
        """
        if level not in (2, 3):
            raise ValueError(f"level must be 2 or 3, got {level!r}")
        anchor = _unique(slugify(title), {s.anchor for s in self.sections})
        section = Section(title=str(title), anchor=anchor, level=level)
        section.paragraphs = _paragraphs(text)
        section.table = _rows(table)
        items = figures.items() if isinstance(figures, Mapping) else figures
        taken = {name for s in self.sections for name in s.files}
        for i, item in enumerate(items, start=1):
            name, caption, fig = _figure_item(item)
            key = name or caption
            stem = f"{anchor}-{_short_slug(key)}" if key else f"{anchor}-fig{i}"
            name = _unique(stem, taken) + ".png"
            taken.add(name[:-4])
            _save_figure(fig, self.out_dir / name)
            section.figures.append((name, None if caption is None else str(caption)))
        self.sections.append(section)
        return section

    def write(self) -> Path:
        """Write ``index.html`` and ``summary.json`` into the output directory.

        Returns
        -------
        pathlib.Path
            The path of ``index.html``.
        """
        from . import __version__

        created = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        summary = dict(self.summary)
        summary["report"] = {
            "title": self.title,
            "created": created,
            "hyperspy_nmfdecide": __version__,
            "sections": [
                {"title": s.title, "anchor": s.anchor, "level": s.level, "figures": s.files}
                for s in self.sections
            ],
        }
        json_path = self.out_dir / "summary.json"
        json_path.write_text(json.dumps(to_jsonable(summary), indent=2) + "\n", encoding="utf-8")
        html_path = self.out_dir / "index.html"
        html_path.write_text(self._html(created, __version__), encoding="utf-8")
        _logger.info("Report written to %s", html_path)
        return html_path

    # -- rendering -------------------------------------------------------------------------------
    def _html(self, created: str, version: str) -> str:
        e = html.escape
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(self.title)}</title>",
            f"<style>{_CSS}</style>",
            "</head>",
            "<body>",
            f"<h1>{e(self.title)}</h1>",
            f'<p class="meta">Written {e(created)} by hyperspy_nmfdecide {e(version)}; '
            'numbers are also in <a href="summary.json">summary.json</a>.</p>',
            self._toc(),
        ]
        for s in self.sections:
            parts.append(f'<section id="{e(s.anchor)}">')
            parts.append(f"<h{s.level}>{e(s.title)}</h{s.level}>")
            parts.extend(f"<p>{e(p)}</p>" for p in s.paragraphs)
            for name, caption in s.figures:
                alt = caption or s.title
                parts.append("<figure>")
                parts.append(f'<img src="{e(name)}" alt="{e(alt)}">')
                if caption:
                    parts.append(f"<figcaption>{e(caption)}</figcaption>")
                parts.append("</figure>")
            if s.table:
                parts.append(_table_html(s.table))
            parts.append("</section>")
        parts += ["</body>", "</html>", ""]
        return "\n".join(parts)

    def _toc(self) -> str:
        if not self.sections:
            return ""
        e = html.escape
        out = ['<nav class="toc"><h2>Contents</h2>', "<ul>"]
        open_item = open_sub = False
        for s in self.sections:
            link = f'<a href="#{e(s.anchor)}">{e(s.title)}</a>'
            if s.level == 3 and open_item:
                if not open_sub:
                    out.append("<ul>")
                    open_sub = True
                out.append(f"<li>{link}</li>")
                continue
            if open_sub:
                out.append("</ul>")
                open_sub = False
            if open_item:
                out.append("</li>")
            out.append(f"<li>{link}")
            open_item = True
        if open_sub:
            out.append("</ul>")
        if open_item:
            out.append("</li>")
        out += ["</ul>", "</nav>"]
        return "\n".join(out)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1150px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
p.meta { color: #666; font-size: .9em; }
nav.toc { background: #f6f6f6; padding: .5em 1.5em; border-radius: 4px; }
nav.toc h2 { border: none; margin-top: .3em; font-size: 1.1em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #444; font-size: .92em; margin-top: .3em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #eee; }
td.text, th.text { text-align: left; }
""".strip()


def slugify(text: str) -> str:
    """Lower-case ASCII slug for anchors and file names.

    Parameters
    ----------
    text : str
        Any text.

    Returns
    -------
    str
        Letters, digits and single hyphens; ``"section"`` when nothing is left.

    Examples
    --------
    >>> slugify("Components at k = 3 (HALS)")
    'components-at-k-3-hals'
    >>> slugify("Größe – Å")
    'grosse-a'
    >>> slugify("<>")
    'section'
    """
    text = str(text).replace("ß", "ss")
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug or "section"


def _figure_item(item) -> tuple[str | None, str | None, object]:
    if isinstance(item, tuple):
        if len(item) == 2:
            return None, item[0], item[1]
        if len(item) == 3:
            return item
        raise ValueError("a figure must be a Figure, (caption, Figure) or (name, caption, Figure)")
    return None, None, item


def _short_slug(text: str, length: int = 48) -> str:
    slug = slugify(text)
    if len(slug) <= length:
        return slug
    cut = slug[:length]
    return cut.rsplit("-", 1)[0] if "-" in cut else cut


def _unique(stem: str, taken: set[str]) -> str:
    name, i = stem, 2
    while name in taken:
        name, i = f"{stem}-{i}", i + 1
    return name


def _paragraphs(text) -> list[str]:
    if text is None:
        return []
    if isinstance(text, str):
        text = re.split(r"\n\s*\n", text)
    return [" ".join(str(p).split()) for p in text if str(p).strip()]


def _rows(table) -> list[dict] | None:
    if table is None:
        return None
    if isinstance(table, Mapping):
        lengths = {len(v) for v in table.values()}
        if len(lengths) > 1:
            raise ValueError(f"table columns have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        return [{str(k): v[i] for k, v in table.items()} for i in range(n)]
    rows = [dict(row) for row in table]
    if not all(isinstance(row, dict) for row in rows):
        raise TypeError("table must be a list of dicts or a dict of lists")
    return rows


def _cell(value) -> tuple[str, bool]:
    """(escaped text, is numeric) of one table cell."""
    if value is None:
        return "–", False
    if isinstance(value, (bool, np.bool_)):
        return ("yes" if value else "no"), False
    if isinstance(value, (int, np.integer)):
        return str(int(value)), True
    if isinstance(value, (float, np.floating)):
        return (f"{float(value):.5g}" if math.isfinite(value) else str(float(value))), True
    return html.escape(str(value)), False


def _table_html(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [str(c) for c in row if str(c) not in columns]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    numeric = [all(cell[1] or cell[0] == "–" for cell in col) for col in zip(*cells)]
    out = ["<table>", "<thead><tr>"]
    out += [
        (f"<th>{html.escape(c)}</th>" if num else f'<th class="text">{html.escape(c)}</th>')
        for c, num in zip(columns, numeric)
    ]
    out.append("</tr></thead>")
    out.append("<tbody>")
    for row in cells:
        tds = "".join(
            f"<td>{text}</td>" if num else f'<td class="text">{text}</td>'
            for (text, _), num in zip(row, numeric)
        )
        out.append(f"<tr>{tds}</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def _bbox(fig) -> dict:
    """Crop to the drawn content only when no layout engine already fits it (saves a draw)."""
    return {} if fig.get_layout_engine() is not None else {"bbox_inches": "tight"}


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=DPI, facecolor="white", **_bbox(fig))
    finally:
        plt.close(fig)


# -- the sweep section ---------------------------------------------------------------------------
def sweep_section(
    report: Report,
    signal,
    sweep,
    *,
    show_k: Iterable[int] | None = None,
    timings: Mapping[str, float] | None = None,
) -> None:
    """Add the data overview, the NMF sweep, its parameters and the components per k.

    Sections added: "Data" (mean pattern with the virtual detectors drawn on it, virtual
    bright-field and annular dark-field images, the calibrations), "Preprocessing" (see
    :func:`preprocessing_section`), "NMF sweep" (MSE vs k plot and a table per k), "Sweep
    parameters", and "Components" with one subsection per k in
    ``show_k``: the factors (log intensity) above their loading maps.  For lazy signals only the
    mean pattern and the two virtual images are computed (one pass each).

    Parameters
    ----------
    report : Report
        The report to extend.
    signal : NMFDecideDiffraction2D or LazyNMFDecideDiffraction2D
        The signal the sweep was run on (4D: a 2-D scan of 2-D patterns).
    sweep : NMFSweep
        The result of ``signal.nmf_sweep()``.
    show_k : iterable of int, optional
        The k whose components are drawn; default every k of the sweep up to
        :data:`MAX_SHOW_K`.
    timings : mapping of str to float, optional
        Wall times in seconds (e.g. ``{"sweep": 61.2}``), shown and stored in the summary.

    Notes
    -----
    Entries added to ``report.summary``: ``data`` (shape, lazy, dtype, calibrations, virtual
    detector geometry), ``preprocessing`` (the recorded steps), ``timings``, ``environment``
    (versions, BLAS) and ``sweep`` (``sweep.summary()`` plus the figure file names).

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1,
    ...                    random_state=0).signal
    >>> sweep = s.nmf_sweep(range(1, 3), n_restarts=2, random_state=0, show_progressbar=False)
    >>> report = Report("report_dir", "Sweep")
    >>> sweep_section(report, s, sweep, show_k=[2])
    >>> [section.title for section in report.sections]
    ['Data', 'Preprocessing', 'NMF sweep', 'Sweep parameters', 'Components', 'k = 2']
    """
    k_values = [int(k) for k in sweep.k_values]
    show_k = _show_k(show_k, k_values)
    timings = {str(k): float(v) for k, v in (timings or {}).items()}

    report.summary["data"] = _data_section(report, signal, sweep)
    preprocessing_section(report, signal)
    report.summary.setdefault("timings", {}).update(timings)
    report.summary["environment"] = environment_info()

    section = report.add_section(
        "NMF sweep",
        text=_sweep_text(sweep.loss.shape[1]),
        figures=[("mse-vs-k", "MSE of every fit against k.", sweep.plot())],
        table=_k_table(sweep),
    )
    sweep_files = {"sweep_plot": section.files[0]}
    report.add_section(
        "Sweep parameters",
        text="Everything needed to repeat the sweep; the same seed gives the same numbers.",
        table=_parameter_table(sweep, k_values, timings),
    )
    component_files = _components_sections(report, sweep, show_k)

    sweep_summary = sweep.summary()
    sweep_summary["figures"] = {**sweep_files, "components": component_files}
    report.summary["sweep"] = sweep_summary


def _sweep_text(n_restarts: int) -> tuple[str, str]:
    """The paragraphs of the "NMF sweep" section: how to read the figure."""
    return (
        f"Every k was fitted from {n_restarts} random non-negative starts and one "
        "deterministic NNDSVD start. The grey map counts how many restarts ended at each "
        "MSE; the blue line is the minimum over restarts (the fit kept), the red dashed line "
        "the mean, the dotted line the MSE of a rank-k PCA (truncated SVD), which no rank-k "
        "fit can beat. A minimum far above the mean, or restarts spread over a wide MSE "
        "range, means the restarts found different local minima. The MSE is the mean squared "
        "difference per unmasked pixel, in counts².",
        "Look for the k past which the minimum MSE stops falling steeply (the elbow): more "
        "components then mostly fit noise.",
    )


def _show_k(show_k: Iterable[int] | None, k_values: list[int]) -> list[int]:
    """The k whose components are drawn: those asked for (all in the sweep), by default every
    k of the sweep up to :data:`MAX_SHOW_K`."""
    if show_k is None:
        return [k for k in k_values if k <= MAX_SHOW_K]
    show_k = [int(k) for k in show_k]
    missing = sorted(set(show_k) - set(k_values))
    if missing:
        raise ValueError(f"show_k {missing} not in the sweep; available k: {k_values}")
    return show_k


def _components_sections(report: Report, sweep, show_k: list[int]) -> dict[str, str]:
    """The "Components" section and its subsection per k; returns k → figure file name."""
    if not show_k:
        return {}
    report.add_section(
        "Components",
        text=(
            "For each k, the factors of the minimum-MSE run (top: diffraction patterns, "
            "each summing to one, on a logarithmic intensity scale so that weak reflections "
            "show) above their loading maps (bottom: counts each component contributes to "
            "every probe position). Components are ordered by integrated loading, largest "
            "first; the percentage is the component's share of the total fitted intensity."
        ),
    )
    k_values = [int(k) for k in sweep.k_values]
    files = {}
    for k in show_k:
        i = k_values.index(k)
        fig = plot_components(
            sweep.get_factors(k),
            sweep.get_loadings(k),
            title=f"k = {k}: factors and loading maps (MSE {sweep.best_loss[i]:.4g})",
        )
        caption = _components_caption(sweep, i, k)
        sub = report.add_section(f"k = {k}", figures=[("components", caption, fig)], level=3)
        files[str(k)] = sub.files[0]
    return files


def _components_caption(sweep, i: int, k: int) -> str:
    run = int(sweep.best_run[i])
    run_text = "the NNDSVD start" if run < 0 else f"restart {run}"
    caption = (
        f"k = {k}, minimum-MSE run ({run_text}), MSE {sweep.best_loss[i]:.5g} "
        f"(PCA bound {sweep.pca_loss[i]:.5g}). Top: factors (log intensity); bottom: "
        "loading maps (counts)."
    )
    if sweep.signal_mask is not None and np.any(sweep.signal_mask):
        caption += " Excluded detector pixels (e.g. the direct beam) are zero: black."
    return caption


# -- preprocessing -------------------------------------------------------------------------------
#: What each step recorded by ``prepare_for_nmf`` does, for the report.
_STEP_TEXT = {
    "dtype": "integer data converted to floating point",
    "bad_pixels": "hot and dead detector pixels replaced by the mean of their 8 neighbours",
    "center": "direct beam moved to the detector centre",
    "background": "background subtracted from every pattern, clipped at 0",
    "binning": "patterns summed in square blocks of pixels",
    "blur": "Gaussian blur of every pattern",
    "scaling": "intensities scaled for dynamic range",
    "beam_mask": "disc around the direct beam left out of the fit (the data are unchanged)",
}

#: What the report says when no preprocessing was recorded.
NO_PREPROCESSING = "none (raw data)"


def preprocessing_section(report: Report, signal) -> None:
    """Add how the scan was prepared: the steps of ``prepare_for_nmf`` in applied order.

    Section added: "Preprocessing", a table with one row per step recorded in the signal's
    metadata (:func:`~hyperspy_nmfdecide.prepare.preprocessing_record`): its position, name,
    what it does and its parameters (with measured values such as the mean beam shift); or
    the words "none (raw data)" when nothing was recorded.

    Parameters
    ----------
    report : Report
        The report to extend.
    signal : hyperspy.signal.BaseSignal
        The signal the sweep was run on (prepared or not).

    Notes
    -----
    ``report.summary["preprocessing"]`` gets the record as it is: a list of
    ``{"step": name, **parameters}`` in applied order, ``[]`` for raw data.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(4, 4), pattern_size=32, random_state=0).signal
    >>> report = Report("report_dir", "Preprocessing")
    >>> preprocessing_section(report, s.prepare_for_nmf(binning=2, show_progressbar=False))
    >>> [step["step"] for step in report.summary["preprocessing"]]
    ['binning']
    >>> preprocessing_section(report, s)
    >>> report.summary["preprocessing"], report.sections[-1].paragraphs[0][:15]
    ([], 'none (raw data)')
    """
    from .prepare import preprocessing_record

    steps = preprocessing_record(signal)
    if not steps:
        report.add_section(
            "Preprocessing",
            text=f"{NO_PREPROCESSING}: the sweep ran on the scan as it was read, without "
            "prepare_for_nmf.",
        )
        report.summary["preprocessing"] = []
        return
    names = [str(step["step"]) for step in steps]
    rows = [
        {
            "order": i,
            "step": name,
            "what it does": _STEP_TEXT.get(name, ""),
            "parameters": "; ".join(
                f"{key} = {_value_text(value)}" for key, value in step.items() if key != "step"
            ),
        }
        for i, (name, step) in enumerate(zip(names, steps), start=1)
    ]
    report.add_section(
        "Preprocessing",
        text=(
            f"The scan was prepared with prepare_for_nmf before the sweep, in this order: "
            f"{' → '.join(names)}. The data overview above and everything below (the sweep, "
            "the decision and the phase maps) are of the prepared scan.",
            "Every step with its parameters, and the values it measured (such as the mean "
            "shift of the direct beam or the number of bad pixels):",
        ),
        table=rows,
    )
    report.summary["preprocessing"] = steps


def _value_text(value) -> str:
    """A parameter value of the preprocessing record as short plain text.

    Examples
    --------
    >>> _value_text([0.123456, 2]), _value_text({"order": 1}), _value_text(None)
    ('[0.1235, 2]', '{order: 1}', 'none')
    """
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _k_table(sweep) -> list[dict]:
    rows = []
    n_restarts = sweep.loss.shape[1]
    for i, k in enumerate(sweep.k_values):
        run = int(sweep.best_run[i])
        n_conv = int(np.count_nonzero(sweep.converged[i]))
        rows.append(
            {
                "k": int(k),
                "best MSE": float(sweep.best_loss[i]),
                "mean MSE": float(sweep.mean_loss[i]),
                "PCA MSE": float(sweep.pca_loss[i]),
                "NNDSVD MSE": float(sweep.nndsvd_loss[i]),
                "best / PCA": float(sweep.best_loss[i] / sweep.pca_loss[i])
                if sweep.pca_loss[i] > 0
                else None,
                "restarts converged": f"{n_conv}/{n_restarts} ({n_conv / n_restarts:.0%})",
                "median passes": float(np.median(sweep.n_iter[i])),
                "best run": "NNDSVD" if run < 0 else run,
            }
        )
    return rows


def _mask_origin(record: dict | None) -> str:
    """Where the sweep's pixel mask came from, from ``sweep.params["signal_mask"]``."""
    if not record:
        return "e.g. direct beam"
    source = record.get("source")
    if source == "automatic":
        return "automatic: " + record.get("beam", {}).get("reason", "direct beam")
    return {
        "prepare_for_nmf": "the beam mask of the preprocessing",
        "given": "given by the user",
        "none": "switched off by the user (every pixel fitted)",
    }.get(source, str(source))


def _mask_text(mask, what: str) -> str:
    if mask is None:
        return "none"
    mask = np.asarray(mask)
    return f"{int(mask.sum())} of {mask.size} {what} excluded"


def _parameter_table(sweep, k_values: list[int], timings: Mapping[str, float]) -> list[dict]:
    p = sweep.params
    k_text = (
        f"{k_values[0]}–{k_values[-1]}"
        if k_values == list(range(k_values[0], k_values[-1] + 1)) and len(k_values) > 1
        else ", ".join(map(str, k_values))
    )
    rows = [
        ("k values", k_text, "numbers of components fitted"),
        ("solver", p.get("solver"), "NMF update rule (hals, als or mu)"),
        ("mode", p.get("mode"), "exact: every pass on the data; fast: on a compressed copy"),
        ("restarts per k", p.get("n_restarts"), "random non-negative starts per k"),
        ("seed", p.get("random_state"), "random seed (entropy) of the starts"),
        ("max_iter", p.get("max_iter"), "maximum passes over the data per run"),
        ("tol", p.get("tol"), "a run stops when its MSE falls by less than this (relative)"),
        ("inner sweeps", p.get("inner_sweeps", 1), "HALS sweeps per update (1 = plain HALS)"),
        ("negative values", p.get("negative_values"), "what was done with negative counts"),
        (
            "signal mask",
            _mask_text(sweep.signal_mask, "detector pixels"),
            _mask_origin(p.get("signal_mask")),
        ),
        ("navigation mask", _mask_text(sweep.navigation_mask, "probe positions"), "e.g. vacuum"),
        ("lazy", bool(p.get("lazy", False)), "data read chunk by chunk from disk"),
    ]
    rows += [(f"wall time: {name}", f"{seconds:.1f} s", "") for name, seconds in timings.items()]
    return [{"parameter": a, "value": b, "meaning": c} for a, b, c in rows]


# -- the decision of k ---------------------------------------------------------------------------
#: Column headings of the decision table, from the names of ``KDecision.table``.
_DECISION_COLUMNS = {
    "k": "k",
    "best_mse": "best MSE",
    "mean_mse": "mean MSE",
    "restart_agreement": "restarts at the minimum",
    "component_agreement": "2 best runs alike",
    "noise_ratio": "noise ratio",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "gmsd": "GMSD",
    "mdsi": "MDSI",
    "next_ssim": "SSIM k vs k+1",
    "next_psnr": "PSNR k vs k+1 (dB)",
    "residual_nsd_ratio": "residual NSD / noise",
    "noise_gain": "noise gain",
    "noise_offset": "dark offset",
    "phases": "phases in the fit",
}

_METHOD_TEXT = {
    "noise": "the number of components of the noise-scaled data above the noise edge, less "
    "those of the fit that are variants or interactions of phases",
    "elbow": "the elbow of the minimum-MSE curve (level 1 alone)",
    "iqa": "where SSIM between raw and reconstructed patterns stops rising",
}


def decision_section(report: Report, decision, *, note: str | None = None) -> None:
    """Add the decision of k: the answer and its reason, the evidence plot and a table per k.

    Section added: "Number of components" (Cao et al.'s two levels: the elbow of the MSE, and
    where extra components start fitting noise), with ``decision.plot()`` and one row per k.

    Parameters
    ----------
    report : Report
        The report to extend.
    decision : KDecision
        The result of ``signal.decide_k()``.
    note : str, optional
        A warning to show (e.g. the one ``decide_k`` gives when the sweep does not bracket the
        decision); by default a note is written when ``decision.suggested_range`` is set.

    Notes
    -----
    ``report.summary["decision"]`` gets ``decision.summary()`` plus the figure file name.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, dose=5000,
    ...                    random_state=0).signal
    >>> _ = s.nmf_sweep(range(1, 4), n_restarts=2, random_state=0, show_progressbar=False)
    >>> report = Report("report_dir", "Decision")
    >>> decision_section(report, s.decide_k(n_sample=16, show_progressbar=False))
    >>> report.summary["decision"]["k"] == s.get_k_decision().k
    True
    """
    k = int(decision.k)
    if note is None and decision.suggested_range is not None:
        low, high = decision.suggested_range
        note = (
            f"The sweep's k range does not bracket the decision: sweep k = {low}..{high} "
            f"and decide again (k = {k} is the nearest end of the range swept)."
        )
    paragraphs = _decision_paragraphs(decision)
    if note:
        paragraphs.append(f"Note: {note}")
    section = report.add_section(
        "Number of components",
        text=paragraphs,
        figures=[
            (
                "decision",
                f"The evidence for k, the decision (k = {k}) marked in every panel.",
                decision.plot(),
            )
        ],
        table=_decision_rows(decision),
    )
    summary = decision.summary()
    if note:
        summary["note"] = note
    summary["figures"] = {"decision_plot": section.files[0]}
    report.summary["decision"] = summary


#: How the decision is made, as the "Number of components" section explains it.
_DECISION_HOW = (
    "How it is decided (Cao et al.'s global plan). Level 1: the elbow of the minimum MSE "
    "against k (top left). Level 2: where extra components start fitting noise. The noise "
    "of every binned pixel is measured between neighbouring probes (with its relation to "
    "the intensity: the detector's gain and dark offset), each pixel is scaled by it and "
    "the squared singular values of the scan are compared with the largest one of pure "
    "noise at the data's own level (top right: the noise ratio; a component counts when "
    "it clears the dashed margin). Of the components of the fit at that k, those that are "
    "the same phase at another thickness (variants) or spots that exist only where two "
    "phases overlap (interactions) are not counted. Beside them: image quality of the "
    "reconstruction against the raw patterns, and of the reconstruction at k against "
    "k + 1, on a sample of probes (bottom left; SSIM near 1 is a close match), the "
    "residual's spread over the measured noise (about 1 once only noise is left) and the "
    "share of random restarts that reach the minimum MSE (bottom right)."
)


def _decision_paragraphs(decision) -> list[str]:
    """The decision and its reason, how it is made, and the noise measured."""
    paragraphs = [
        f"Decision: k = {int(decision.k)} ({decision.method}: "
        f"{_METHOD_TEXT.get(decision.method, '')}). The elbow of the minimum-MSE curve "
        f"(level 1) is at k = {int(decision.elbow_k)}.",
        f"Why: {decision.reason}",
        _DECISION_HOW,
    ]
    if decision.noise:
        n = decision.noise
        paragraphs.append(
            f"Noise measured between neighbouring probes: variance = {n['gain']:.3g} × "
            f"intensity {'+' if n['zero_variance'] >= 0 else '−'} "
            f"{abs(n['zero_variance']):.3g} per pixel (gain {n['gain']:.3g}; dark offset "
            f"{n['offset']:.3g} or readout noise {n['readout_noise']:.3g}), from "
            f"{n['n_pairs_kept']} of {n['n_pairs']} probe samples."
        )
    return paragraphs


def _decision_rows(decision) -> list[dict]:
    """One row per k of ``decision.table``, headed for people, the decided k and elbow marked."""
    rows = []
    for row in decision.table:
        out = {  # NaN (e.g. "k vs k+1" at the last k) shows as a dash
            _DECISION_COLUMNS.get(name, name): None
            if isinstance(value, float) and not math.isfinite(value)
            else value
            for name, value in row.items()
        }
        marks = [
            m for m, kk in (("decided", decision.k), ("elbow", decision.elbow_k)) if row["k"] == kk
        ]
        out["mark"] = ", ".join(marks)
        rows.append(out)
    return rows


# -- the phase maps ------------------------------------------------------------------------------
def phase_section(report: Report, pm) -> None:
    """Add the phase maps: label map, legend, component tracking, raw vs reconstructed means.

    Sections added: "Phase maps" (``pm.plot()`` and the legend: which components make each
    phase), with subsections "Component tracking" (each component followed to k − 1 and
    k + 1) and "Raw vs reconstructed" (mean raw pattern of each phase against the mean of the
    NMF model over the same probes).

    Parameters
    ----------
    report : Report
        The report to extend.
    pm : PhaseMaps
        The result of ``signal.phase_maps()``.

    Notes
    -----
    ``report.summary["phase_maps"]`` gets ``pm.summary()`` plus the figure file name.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> s = simulated_scan(nav_shape=(8, 8), pattern_size=16, n_crystals=1, dose=5000,
    ...                    random_state=0).signal
    >>> _ = s.nmf_sweep(range(1, 4), n_restarts=2, random_state=0, show_progressbar=False)
    >>> report = Report("report_dir", "Phases")
    >>> phase_section(report, s.phase_maps(2, show_progressbar=False))
    >>> [section.title for section in report.sections]
    ['Phase maps', 'Component tracking', 'Raw vs reconstructed']
    """
    summary = pm.summary()
    section = report.add_section(
        "Phase maps",
        text=_phase_text(pm, summary),
        figures=[("phase-maps", f"Phase maps at k = {int(pm.k)}.", pm.plot())],
        table=_legend_rows(pm, summary),
    )
    report.add_section(
        "Component tracking",
        text=_tracking_text(pm, summary),
        table=_tracking_rows(int(pm.k), summary) or None,
        level=3,
    )
    report.add_section(
        "Raw vs reconstructed",
        text=(
            "The mean raw pattern of each phase against the mean reconstructed (NMF model) "
            "pattern over the same probes: SSIM and cosine similarity near 1 and a high PSNR "
            "mean that the components explain the phase; a poor match points to a missing "
            "component or a wrong threshold."
        ),
        table=_comparison_rows(pm) or None,
        level=3,
    )
    summary["figures"] = {"phase_maps_plot": section.files[0]}
    report.summary["phase_maps"] = summary


def orientation_section(report: Report, index, pm) -> None:
    """Add "Orientations": each component's phase and orientation, and the crystal maps.

    A table of components (phase, zone axis, Euler angles, scores, reliabilities), the crystal
    map beside the IPF-coloured map (``index.plot(pm)``), and the same per-probe crystals as an
    orix CrystalMap in ``crystals.h5`` next to the report (orix, MTEX and EBSD tools read it).

    Parameters
    ----------
    report : Report
        The report to extend.
    index : ComponentIndex
        The result of ``signal.index_components()`` at the phase maps' k.
    pm : PhaseMaps
        The phase maps it was read with.
    """
    from orix import io

    crystal_map = index.crystal_map(pm)
    path = report.out_dir / "crystals.h5"
    io.save(path, crystal_map, overwrite=True)
    n_crystals = int(np.count_nonzero(~np.asarray(index.is_background)))
    text = (
        f"The {index.k} NMF factors matched against template banks of "
        f"{', '.join(index.phase_names)} (pyxem's polar template matching over each phase's "
        f"fundamental zone at {index.params['resolution']:g}°; refined on the factor, the "
        "angle about the beam from the spot positions and the tilt from the spot intensities: "
        f"{'yes' if index.params['refine'] else 'no'}). "
        f"{n_crystals} component(s) are crystals. A phase reliability near 0 means another "
        "phase fits as well (e.g. two cubic phases of nearly equal spacing at [001]); a "
        "zone-axis pattern cannot tell a turn of 180° about the beam. The crystals at every "
        f"probe (overlaps keep each crystal) are in {path.name} (orix CrystalMap)."
    )
    section = report.add_section(
        "Orientations",
        text=text,
        figures=[
            ("orientations", "Crystals and their IPF colours (beam direction).", index.plot(pm))
        ],
        table=[{**row, "name": name} for row, name in zip(index.table, index.component_names)],
    )
    report.summary["orientations"] = {
        "table": index.table,
        "params": index.params,
        "crystal_map": path.name,
        "figure": section.files[0],
    }


def _phase_text(pm, summary: dict) -> tuple[str, str]:
    """How the phases were found, and what the figure shows."""
    background = pm.background_index
    background_text = (
        f"Component C{background} is the background (the direct beam and the diffuse "
        "scattering present at almost every probe); it is kept out of the phases."
        if background is not None
        else "No component was recognised as the background."
    )
    return (
        f"The loading map of each of the k = {int(pm.k)} components was thresholded "
        f"({pm.params.get('threshold')}) into a mask of the probes where the component is "
        "present. Every probe is labelled by the set of components present there: one "
        "component is a single crystal (phase, orientation), two or more an overlap, where "
        f"crystals lie on top of each other along the beam. {background_text}",
        f"{pm.n_phases} phases; overlaps cover "
        f"{summary.get('overlap_fraction', 0.0):.0%} of the probes. Top: the label map "
        "(overlaps hatched) and a colour composite of the loading maps; below, for every "
        "phase, the mean raw pattern beside the mean of the NMF model over the same probes "
        "(symmetric log intensity).",
    )


def _legend_rows(pm, summary: dict) -> list[dict]:
    """The legend: the components of every phase and its probes, then label 0."""
    sizes = [int(n) for n in pm.phase_sizes]
    rows = [
        {
            "phase": int(label),
            "components": " + ".join(f"C{int(m)}" for m in members),
            "probes": sizes[int(label) - 1] if 0 < int(label) <= len(sizes) else None,
            "overlap": len(members) > 1,
        }
        for label, members in pm.legend.items()
    ]
    rows.append(
        {
            "phase": 0,
            "components": "none (background only, or below every threshold)",
            "probes": summary.get("no_phase_probes"),
            "overlap": False,
        }
    )
    return rows


def _tracking_text(pm, summary: dict) -> str:
    """How the components were followed to k − 1 and k + 1, and how many overlaps hold."""
    k = int(pm.k)
    tracking = pm.tracking
    neighbours = [int(n) for n in tracking.get("neighbours", [])]
    if not neighbours:
        return (
            f"The sweep has neither k = {k - 1} nor k = {k + 1}: the components could not be "
            "followed to a neighbouring k."
        )
    text = (
        f"Each component was matched to the components of k = "
        f"{' and '.join(map(str, neighbours))} by the cosine similarity of its pattern "
        f"(stable: similarity ≥ {tracking.get('threshold', 0):.2g} at every neighbour). "
        "A component that splits at k + 1 or merges at k − 1 is the sign of a k too high "
        "or too low; a phase that is an overlap at k and still one at the neighbours is a "
        "real overlap rather than an artefact of this k."
    )
    overlaps = summary.get("overlaps", [])
    if overlaps:
        held = [o for o in overlaps if o.get("holds_prev") or o.get("holds_next")]
        text += f" {len(held)} of {len(overlaps)} overlap phases hold at a neighbouring k."
    return text


def _tracking_rows(k: int, summary: dict) -> list[dict]:
    """One row per component: background, similarity at each neighbour, splits and merges."""
    rows = []
    for row in summary.get("components", []):
        splits = row.get("splits_at_next")
        merges = row.get("merges_at_prev")
        rows.append(
            {
                "component": f"C{row['component']}",
                "background": row.get("background"),
                f"similarity at k={k - 1}": row.get("similarity_prev"),
                f"similarity at k={k + 1}": row.get("similarity_next"),
                "stable": row.get("stable"),
                "splits at k+1 into": None
                if splits is None
                else " + ".join(f"C{int(j)}" for j in splits),
                "merges at k−1": None
                if merges is None
                else f"with C{int(merges[0])} into C{int(merges[1])}",
            }
        )
    return rows


def _comparison_rows(pm) -> list[dict]:
    """One row per phase: the raw mean against the reconstructed mean."""
    return [
        {
            "phase": row.get("label"),
            "components": " + ".join(f"C{int(m)}" for m in row.get("components", [])),
            "probes": row.get("n_probes"),
            "SSIM": row.get("ssim"),
            "PSNR (dB)": row.get("psnr"),
            "cosine": row.get("cosine"),
        }
        for row in pm.comparison
    ]


# -- data overview -------------------------------------------------------------------------------
def _data_section(report: Report, signal, sweep) -> dict:
    """The "Data" section: the mean pattern with the virtual detectors and their images, and
    the calibrations.  Returns the ``data`` entry of the summary."""
    am = signal.axes_manager
    if am.navigation_dimension != 2 or am.signal_dimension != 2:
        raise ValueError(
            "the report needs a 2-D scan of 2-D patterns; got navigation shape "
            f"{am.navigation_shape} and signal shape {am.signal_shape}"
        )
    mean = signal.mean(axis=am.navigation_axes)
    if mean._lazy:
        mean.compute(show_progressbar=False)
    mean_data = np.asarray(mean.data, dtype=float)
    kx, ky = am.signal_axes
    pixels = find_virtual_detectors(mean_data, sweep.signal_mask)
    detectors = calibrate_detectors(pixels, kx, ky)
    rois = _detector_rois(detectors)
    virtual = signal.get_virtual_image(rois)
    if virtual._lazy:
        virtual.compute(show_progressbar=False)
    report.add_section(
        "Data",
        text=_data_text(signal, mean_data),
        figures=[
            (
                "overview",
                "Mean pattern and virtual images.",
                plot_data_overview(mean, virtual, rois, sweep.signal_mask),
            )
        ],
        table=_axes_rows(am),
    )
    units = plain_units(kx.units) if kx.units and kx.units != "<undefined>" else "pixels"
    return _data_summary(signal, mean_data) | {
        "virtual_detectors": {
            "centre_row_col_pixels": list(pixels["centre"]),
            "centre_kx_ky": list(detectors["centre"]),
            "bf_radius": detectors["bf_radius"],
            "adf_inner": detectors["adf_inner"],
            "adf_outer": detectors["adf_outer"],
            "units": units,
        },
        "mean_counts_per_pattern": float(mean_data.sum()),
    }


def _detector_rois(detectors: dict) -> list:
    """HyperSpy ROIs of the calibrated bright-field disc and annular dark-field ring."""
    import hyperspy.api as hs

    centre = detectors["centre"]
    return [
        hs.roi.CircleROI(*centre, detectors["bf_radius"]),
        hs.roi.CircleROI(*centre, detectors["adf_outer"], r_inner=detectors["adf_inner"]),
    ]


def _data_text(signal, mean_data: np.ndarray) -> tuple[str, str]:
    """What the scan is, and what the overview figure shows."""
    am = signal.axes_manager
    nav_shape = tuple(int(n) for n in am.navigation_shape)
    sig_shape = tuple(int(n) for n in am.signal_shape)
    memory = "lazy: read from disk chunk by chunk" if signal._lazy else "in memory"
    return (
        f"{signal.metadata.General.title or 'Untitled signal'}: a scan of "
        f"{nav_shape[0]} × {nav_shape[1]} probe positions, each a "
        f"{sig_shape[0]} × {sig_shape[1]} pixel diffraction pattern "
        f"({signal.data.dtype}, {memory}). Mean counts per pattern: {mean_data.sum():.4g}.",
        "Left: the mean diffraction pattern (logarithmic intensity) with the virtual detectors "
        "drawn: the bright-field disc (cyan) and the annular dark-field ring (white, dashed). "
        "Middle and right: the virtual images they give.",
    )


def _axes_rows(am) -> list[dict]:
    """One row per axis of the scan and the detector: role, size and calibration."""
    return [
        {
            "axis": a.name if a.name not in (None, "<undefined>") else f"axis {i}",
            "role": "scan" if a.navigate else "detector",
            "size": int(a.size),
            "scale": float(getattr(a, "scale", np.nan)),
            "offset": float(getattr(a, "offset", np.nan)),
            "units": plain_units(a.units),
        }
        for i, a in enumerate(am.navigation_axes + am.signal_axes)
    ]


def _data_summary(signal, mean_data: np.ndarray) -> dict:
    am = signal.axes_manager
    return {
        "title": str(signal.metadata.General.title),
        "shape": [int(n) for n in signal.data.shape],
        "navigation_shape": [int(n) for n in am.navigation_shape],
        "signal_shape": [int(n) for n in am.signal_shape],
        "lazy": bool(signal._lazy),
        "dtype": str(signal.data.dtype),
        "axes": [
            {key: value for key, value in a.get_axis_dictionary().items() if key != "_type"}
            for a in am.navigation_axes + am.signal_axes
        ],
    }


# -- the ground truth of a simulation ------------------------------------------------------------
def truth_section(report: Report, scan, *, decision=None, pm=None) -> None:
    """Add a simulation's ground truth: true k, the true patterns, their weights and labels.

    Section added: "Ground truth of the simulation", with the true sources above their
    weights (as the components of a fit are drawn), the map of the true labels and a table of
    the simulated crystals.  With the decision and the phase maps: the decided k against the
    true k, and the adjusted Rand index (ARI) of the phase labels against the true labels.

    Parameters
    ----------
    report : Report
        The report to extend.
    scan : SimulatedScan
        The result of :func:`hyperspy_nmfdecide.data.simulated_scan`.
    decision : KDecision, optional
        The decision of k on the scan.
    pm : PhaseMaps, optional
        The phase maps of the scan.

    Notes
    -----
    ``report.summary["ground_truth"]`` gets the true k, the names of the sources, the label
    sets and the simulation's parameters; with ``decision`` ``decided_k`` and
    ``decided_k_correct``, with ``pm`` ``phase_map_ari``.

    Examples
    --------
    >>> from hyperspy_nmfdecide.data import simulated_scan
    >>> scan = simulated_scan(nav_shape=(8, 8), pattern_size=32, random_state=0)
    >>> report = Report("report_dir", "Truth")
    >>> truth_section(report, scan)
    >>> report.summary["ground_truth"]["true_k"], report.sections[-1].files
    (4, ['ground-truth-of-the-simulation-sources.png', 'ground-truth-of-the-simulation-labels.png'])
    """
    names = list(scan.source_names)
    comparison, extra = _truth_comparison(scan, decision, pm)
    params = scan.params
    settings = ", ".join(
        f"{key} {params[key]}"
        for key in ("layout", "dose", "background", "direct_beam", "beam_offset", "spot_sigma")
        if key in params
    )
    report.add_section(
        "Ground truth of the simulation",
        text=(
            f"The scan was simulated from {len(names)} non-negative sources "
            f"({', '.join(names)}), so the true number of components is k = {scan.true_k}: a "
            "good sweep shows the elbow of the MSE there, and factors that match these "
            "patterns. The background source holds the direct beam and the diffuse scattering "
            "shared by every probe.",
            *comparison,
            f"Simulation settings: {settings}; all of them are in summary.json.",
        ),
        figures=_truth_figures(scan),
        table=_crystal_rows(params) or None,
    )
    report.summary["ground_truth"] = {
        "true_k": int(scan.true_k),
        **extra,
        "source_names": names,
        "label_sets": {str(k): list(v) for k, v in scan.label_sets.items()},
        "params": params,
    }


def _truth_figures(scan) -> list[tuple]:
    """The true sources with their weights, and the map of the true labels."""
    am = scan.signal.axes_manager
    sources = plot_true_sources(
        scan.sources,
        scan.weights,
        scan.source_names,
        pattern_axes=am.signal_axes,
        scan_axes=am.navigation_axes,
        true_k=scan.true_k,
    )
    labels = plot_true_labels(scan.labels, scan.label_sets, scan.source_names, *am.navigation_axes)
    return [
        (
            "sources",
            "The true source patterns (log intensity) and the counts each contributes to every "
            "probe (the ideal factors and loadings).",
            sources,
        ),
        ("labels", "Which crystals are present at each probe (c1 = crystal 1, ...).", labels),
    ]


def _truth_comparison(scan, decision, pm) -> tuple[list[str], dict]:
    """Paragraphs and summary entries comparing the decided k and the phase labels with the
    truth (the labels by their adjusted Rand index)."""
    comparison: list[str] = []
    extra: dict = {}
    if decision is not None:
        right = int(decision.k) == int(scan.true_k)
        comparison.append(
            f"Decided k = {decision.k} ({decision.method}) against the true k = {scan.true_k}: "
            f"{'right' if right else 'wrong'}."
        )
        extra["decided_k"] = int(decision.k)
        extra["decided_k_correct"] = right
    if pm is not None:
        from sklearn.metrics import adjusted_rand_score

        truth = np.asarray(scan.labels).ravel()
        ari = float(adjusted_rand_score(truth, np.asarray(pm.label_array).ravel()))
        comparison.append(
            f"Phase labels at k = {pm.k} against the true labels: adjusted Rand index (ARI) "
            f"{ari:.3f} (1 = the same partition of the probes up to the names of the labels, "
            "0 = no better than chance)."
        )
        extra["phase_map_ari"] = ari
    return comparison, extra


def _crystal_rows(params: dict) -> list[dict]:
    """One row per simulated crystal: phase, structure, zone axis and orientation."""
    return [
        {
            "source": c.get("name"),
            "phase": c.get("phase"),
            "structure": c.get("structure"),
            "zone axis": "[" + " ".join(str(i) for i in c.get("zone_axis", [])) + "]",
            "in-plane rotation (°)": c.get("in_plane_deg"),
            "tilt (°)": c.get("tilt_deg"),
            "spots": c.get("n_spots"),
        }
        for c in params.get("crystals", [])
    ]


# -- environment ---------------------------------------------------------------------------------
def environment_info() -> dict:
    """Versions of the main packages and the BLAS libraries in use (for reproducibility).

    Examples
    --------
    >>> {"hyperspy", "pyxem", "numpy", "blas"} <= set(environment_info())
    True
    """
    import platform
    from importlib import metadata

    from . import __version__

    info: dict = {"hyperspy_nmfdecide": __version__, "python": platform.python_version()}
    for name in ("hyperspy", "pyxem", "numpy", "scipy", "dask", "matplotlib"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {
                "library": entry.get("internal_api"),
                "threads": entry.get("num_threads"),
                "architecture": entry.get("architecture"),
            }
            for entry in threadpool_info()
            if entry.get("user_api") == "blas"
        ]
    except Exception as error:  # noqa: BLE001 — information only
        info["blas"] = f"unknown ({error})"
    info["platform"] = platform.platform()
    return info
