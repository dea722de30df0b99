"""Self-contained HTML reports: an ``index.html``, its PNG figures and a ``summary.json``.

:class:`Report` is a small builder: each capability adds sections (a text, figures, a table) and
JSON-ready entries to :attr:`Report.summary`; :meth:`Report.write` renders everything.
:func:`sweep_section` adds what an NMF sweep shows (the data, how it was prepared, the MSE-vs-k
plot and table, the parameters and the factors with their loading maps per k),
:func:`preprocessing_section` on its own the preparation, :func:`decision_section` the decision
of k and its evidence, :func:`phase_section` the phase maps.

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

_logger = logging.getLogger(__name__)

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


def to_jsonable(value):
    """``value`` with numpy scalars and arrays, paths and non-finite floats made JSON-ready.

    NaN and infinities become None (strict JSON has no NaN).

    Examples
    --------
    >>> to_jsonable({"a": np.float32(0.5), "b": np.arange(3), "c": float("nan"), 4: (1, 2)})
    {'a': 0.5, 'b': [0, 1, 2], 'c': None, '4': [1, 2]}
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "as_dictionary"):
        return to_jsonable(value.as_dictionary())
    return str(value)


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
    """
    k_values = [int(k) for k in sweep.k_values]
    if show_k is None:
        show_k = [k for k in k_values if k <= MAX_SHOW_K]
    else:
        show_k = [int(k) for k in show_k]
        missing = sorted(set(show_k) - set(k_values))
        if missing:
            raise ValueError(f"show_k {missing} not in the sweep; available k: {k_values}")
    timings = {str(k): float(v) for k, v in (timings or {}).items()}

    data_summary = _data_section(report, signal, sweep)
    report.summary["data"] = data_summary
    preprocessing_section(report, signal)
    report.summary.setdefault("timings", {}).update(timings)
    report.summary["environment"] = environment_info()

    # MSE vs k.
    section = report.add_section(
        "NMF sweep",
        text=(
            f"Every k was fitted from {sweep.loss.shape[1]} random non-negative starts and one "
            "deterministic NNDSVD start. The grey map counts how many restarts ended at each "
            "MSE; the blue line is the minimum over restarts (the fit kept), the red dashed line "
            "the mean, the dotted line the MSE of a rank-k PCA (truncated SVD), which no rank-k "
            "fit can beat. A minimum far above the mean, or restarts spread over a wide MSE "
            "range, means the restarts found different local minima. The MSE is the mean squared "
            "difference per unmasked pixel, in counts².",
            "Look for the k past which the minimum MSE stops falling steeply (the elbow): more "
            "components then mostly fit noise.",
        ),
        figures=[("mse-vs-k", "MSE of every fit against k.", sweep.plot())],
        table=_k_table(sweep),
    )
    sweep_files = {"sweep_plot": section.files[0]}

    report.add_section(
        "Sweep parameters",
        text="Everything needed to repeat the sweep; the same seed gives the same numbers.",
        table=_parameter_table(sweep, k_values, timings),
    )

    component_files = {}
    if show_k:
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
        for k in show_k:
            i = k_values.index(k)
            run = int(sweep.best_run[i])
            run_text = "the NNDSVD start" if run < 0 else f"restart {run}"
            fig = plot_components(
                sweep.get_factors(k),
                sweep.get_loadings(k),
                title=f"k = {k}: factors and loading maps (MSE {sweep.best_loss[i]:.4g})",
            )
            caption = (
                f"k = {k}, minimum-MSE run ({run_text}), MSE {sweep.best_loss[i]:.5g} "
                f"(PCA bound {sweep.pca_loss[i]:.5g}). Top: factors (log intensity); bottom: "
                "loading maps (counts)."
            )
            if sweep.signal_mask is not None and np.any(sweep.signal_mask):
                caption += " Excluded detector pixels (e.g. the direct beam) are zero: black."
            sub = report.add_section(f"k = {k}", figures=[("components", caption, fig)], level=3)
            component_files[str(k)] = sub.files[0]

    sweep_summary = sweep.summary()
    sweep_summary["figures"] = {**sweep_files, "components": component_files}
    report.summary["sweep"] = sweep_summary


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
    paragraphs = [
        f"Decision: k = {k} ({decision.method}: {_METHOD_TEXT.get(decision.method, '')}). "
        f"The elbow of the minimum-MSE curve (level 1) is at k = {int(decision.elbow_k)}.",
        f"Why: {decision.reason}",
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
        "share of random restarts that reach the minimum MSE (bottom right).",
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
    if note is None and decision.suggested_range is not None:
        low, high = decision.suggested_range
        note = (
            f"The sweep's k range does not bracket the decision: sweep k = {low}..{high} "
            f"and decide again (k = {k} is the nearest end of the range swept)."
        )
    if note:
        paragraphs.append(f"Note: {note}")
    rows = []
    for row in decision.table:
        out = {  # NaN (e.g. "k vs k+1" at the last k) shows as a dash
            _DECISION_COLUMNS.get(name, name): None
            if isinstance(value, float) and not math.isfinite(value)
            else value
            for name, value in row.items()
        }
        marks = [m for m, kk in (("decided", k), ("elbow", decision.elbow_k)) if row["k"] == kk]
        out["mark"] = ", ".join(marks)
        rows.append(out)
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
        table=rows,
    )
    summary = decision.summary()
    if note:
        summary["note"] = note
    summary["figures"] = {"decision_plot": section.files[0]}
    report.summary["decision"] = summary


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
    """
    k = int(pm.k)
    background = pm.background_index
    summary = pm.summary()
    sizes = [int(n) for n in pm.phase_sizes]
    legend_rows = []
    for label, members in pm.legend.items():
        legend_rows.append(
            {
                "phase": int(label),
                "components": " + ".join(f"C{int(m)}" for m in members),
                "probes": sizes[int(label) - 1] if 0 < int(label) <= len(sizes) else None,
                "overlap": len(members) > 1,
            }
        )
    legend_rows.append(
        {
            "phase": 0,
            "components": "none (background only, or below every threshold)",
            "probes": summary.get("no_phase_probes"),
            "overlap": False,
        }
    )
    background_text = (
        f"Component C{background} is the background (the direct beam and the diffuse "
        "scattering present at almost every probe); it is kept out of the phases."
        if background is not None
        else "No component was recognised as the background."
    )
    threshold = pm.params.get("threshold")
    section = report.add_section(
        "Phase maps",
        text=(
            f"The loading map of each of the k = {k} components was thresholded "
            f"({threshold}) into a mask of the probes where the component is present. Every "
            "probe is labelled by the set of components present there: one component is a "
            "single crystal (phase, orientation), two or more an overlap, where crystals lie "
            f"on top of each other along the beam. {background_text}",
            f"{pm.n_phases} phases; overlaps cover "
            f"{summary.get('overlap_fraction', 0.0):.0%} of the probes. Top: the label map "
            "(overlaps hatched) and a colour composite of the loading maps; below, for every "
            "phase, the mean raw pattern beside the mean of the NMF model over the same probes "
            "(symmetric log intensity).",
        ),
        figures=[("phase-maps", f"Phase maps at k = {k}.", pm.plot())],
        table=legend_rows,
    )
    phase_files = {"phase_maps_plot": section.files[0]}

    tracking = pm.tracking
    neighbours = [int(n) for n in tracking.get("neighbours", [])]
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
    overlaps = summary.get("overlaps", [])
    held = [o for o in overlaps if o.get("holds_prev") or o.get("holds_next")]
    if neighbours:
        track_text = (
            f"Each component was matched to the components of k = "
            f"{' and '.join(map(str, neighbours))} by the cosine similarity of its pattern "
            f"(stable: similarity ≥ {tracking.get('threshold', 0):.2g} at every neighbour). "
            "A component that splits at k + 1 or merges at k − 1 is the sign of a k too high "
            "or too low; a phase that is an overlap at k and still one at the neighbours is a "
            "real overlap rather than an artefact of this k."
        )
        track_text += (
            f" {len(held)} of {len(overlaps)} overlap phases hold at a neighbouring k."
            if overlaps
            else ""
        )
    else:
        track_text = (
            f"The sweep has neither k = {k - 1} nor k = {k + 1}: the components could not be "
            "followed to a neighbouring k."
        )
    report.add_section("Component tracking", text=track_text, table=rows or None, level=3)

    comparison = [
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
    report.add_section(
        "Raw vs reconstructed",
        text=(
            "The mean raw pattern of each phase against the mean reconstructed (NMF model) "
            "pattern over the same probes: SSIM and cosine similarity near 1 and a high PSNR "
            "mean that the components explain the phase; a poor match points to a missing "
            "component or a wrong threshold."
        ),
        table=comparison or None,
        level=3,
    )
    summary["figures"] = phase_files
    report.summary["phase_maps"] = summary


# -- data overview -------------------------------------------------------------------------------
def plain_units(units) -> str:
    """Units as plain Unicode text (for HTML and JSON), from HyperSpy's mathtext strings.

    Examples
    --------
    >>> plain_units(r"$\\AA^{-1}$"), plain_units("nm^{-1}"), plain_units("1/nm")
    ('Å⁻¹', 'nm⁻¹', '1/nm')
    """
    text = str(units).replace("$", "").replace("\\AA", "Å").replace("\\mathrm", "")
    superscripts = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
    text = re.sub(r"\^\{([-0-9]+)\}", lambda m: m.group(1).translate(superscripts), text)
    text = re.sub(r"\^([-]?[0-9])", lambda m: m.group(1).translate(superscripts), text)
    return text.replace("{", "").replace("}", "").replace("\\", "").strip()


def _axis_label(axis) -> str:
    units = getattr(axis, "units", None)
    name = axis.name if isinstance(axis.name, str) and axis.name != "<undefined>" else ""
    if units and units != "<undefined>":
        return f"{name} ({units})".strip()
    return name or "pixels"


def _extent(x_axis, y_axis) -> list[float]:
    """imshow extent (origin upper) from two HyperSpy axes, pixel edges included."""

    def edges(axis):
        values = np.asarray(axis.axis, dtype=float)
        step = (values[-1] - values[0]) / (len(values) - 1) if len(values) > 1 else 1.0
        return values[0] - step / 2, values[-1] + step / 2

    x0, x1 = edges(x_axis)
    y0, y1 = edges(y_axis)
    return [x0, x1, y1, y0]


def _aspect(x_axis, y_axis) -> str:
    same = getattr(x_axis, "units", None) == getattr(y_axis, "units", None)
    return "equal" if same else "auto"


def _pixel_to_value(axis, index: float) -> float:
    values = np.asarray(axis.axis, dtype=float)
    return float(np.interp(index, np.arange(len(values)), values, left=None, right=None))


def find_virtual_detectors(mean_pattern: np.ndarray, signal_mask=None) -> dict:
    """Direct-beam centre and radii for virtual bright-field and annular dark-field images.

    The centre and radius come from the signal mask when one is given (its centroid and
    equivalent radius), else from the mean pattern: the maximum after a Gaussian blur, and the
    radius where the azimuthal mean falls to 10 % of the way from the median to the peak.
    The annulus runs from 1.5 × the beam radius + 1 pixel to the nearest detector edge.

    Parameters
    ----------
    mean_pattern : numpy.ndarray
        (n_ky, n_kx) mean diffraction pattern.
    signal_mask : numpy.ndarray, optional
        Boolean, True = excluded (typically a direct-beam disc).

    Returns
    -------
    dict
        ``centre`` (row, column) and ``bf_radius``, ``adf_inner``, ``adf_outer``, in pixels.

    Examples
    --------
    >>> yy, xx = np.indices((32, 32))
    >>> pattern = 1.0 + 100.0 * ((yy - 14) ** 2 + (xx - 17) ** 2 <= 9)
    >>> d = find_virtual_detectors(pattern)
    >>> d["centre"], round(d["bf_radius"], 1)
    ((14.0, 17.0), 3.0)
    """
    from scipy import ndimage

    pattern = np.nan_to_num(np.asarray(mean_pattern, dtype=float))
    shape = pattern.shape
    if signal_mask is not None and np.any(signal_mask):
        mask = np.asarray(signal_mask, dtype=bool)
        cy, cx = ndimage.center_of_mass(mask)
        radius = math.sqrt(mask.sum() / math.pi)
    else:
        blurred = ndimage.gaussian_filter(pattern, sigma=max(1.0, min(shape) / 64))
        cy, cx = (float(i) for i in np.unravel_index(np.argmax(blurred), shape))
        yy, xx = np.indices(shape)
        r = np.hypot(yy - cy, xx - cx).round().astype(int)
        profile = np.bincount(r.ravel(), pattern.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
        floor = float(np.median(pattern))
        level = floor + 0.1 * (profile[0] - floor)
        below = np.flatnonzero(profile < level)
        radius = float(below[0] - 1) if below.size else 2.0
        radius = max(radius, 1.0)
    edge = min(cy, cx, shape[0] - 1 - cy, shape[1] - 1 - cx)
    inner = 1.5 * radius + 1
    outer = max(edge, inner + 1)
    return {
        "centre": (float(cy), float(cx)),
        "bf_radius": float(radius),
        "adf_inner": float(inner),
        "adf_outer": float(outer),
    }


def _data_section(report: Report, signal, sweep) -> dict:
    import hyperspy.api as hs

    am = signal.axes_manager
    if am.navigation_dimension != 2 or am.signal_dimension != 2:
        raise ValueError(
            "the report needs a 2-D scan of 2-D patterns; got navigation shape "
            f"{am.navigation_shape} and signal shape {am.signal_shape}"
        )
    lazy = bool(signal._lazy)
    mean = signal.mean(axis=am.navigation_axes)
    if mean._lazy:
        mean.compute(show_progressbar=False)
    mean_data = np.asarray(mean.data, dtype=float)
    detectors = find_virtual_detectors(mean_data, sweep.signal_mask)

    kx, ky = am.signal_axes
    cy, cx = detectors["centre"]
    scale = abs(float(np.mean(np.diff(kx.axis)))) if kx.size > 1 else 1.0
    centre = (_pixel_to_value(kx, cx), _pixel_to_value(ky, cy))
    rois = [
        hs.roi.CircleROI(*centre, detectors["bf_radius"] * scale),
        hs.roi.CircleROI(
            *centre, detectors["adf_outer"] * scale, r_inner=detectors["adf_inner"] * scale
        ),
    ]
    virtual = signal.get_virtual_image(rois)
    if virtual._lazy:
        virtual.compute(show_progressbar=False)
    fig = _plot_data_overview(mean, virtual, rois, sweep.signal_mask)

    nav_shape = tuple(int(n) for n in am.navigation_shape)
    sig_shape = tuple(int(n) for n in am.signal_shape)
    text = (
        f"{signal.metadata.General.title or 'Untitled signal'}: a scan of "
        f"{nav_shape[0]} × {nav_shape[1]} probe positions, each a "
        f"{sig_shape[0]} × {sig_shape[1]} pixel diffraction pattern "
        f"({signal.data.dtype}, {'lazy: read from disk chunk by chunk' if lazy else 'in memory'}"
        f"). Mean counts per pattern: {mean_data.sum():.4g}.",
        "Left: the mean diffraction pattern (logarithmic intensity) with the virtual detectors "
        "drawn: the bright-field disc (cyan) and the annular dark-field ring (white, dashed). "
        "Middle and right: the virtual images they give.",
    )
    axes_rows = [
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
    report.add_section(
        "Data",
        text=text,
        figures=[("overview", "Mean pattern and virtual images.", fig)],
        table=axes_rows,
    )
    units = plain_units(kx.units) if kx.units and kx.units != "<undefined>" else "pixels"
    return {
        "title": str(signal.metadata.General.title),
        "shape": [int(n) for n in signal.data.shape],
        "navigation_shape": list(nav_shape),
        "signal_shape": list(sig_shape),
        "lazy": lazy,
        "dtype": str(signal.data.dtype),
        "axes": [
            {key: value for key, value in a.get_axis_dictionary().items() if key != "_type"}
            for a in am.navigation_axes + am.signal_axes
        ],
        "virtual_detectors": {
            "centre_row_col_pixels": list(detectors["centre"]),
            "centre_kx_ky": list(centre),
            "bf_radius": detectors["bf_radius"] * scale,
            "adf_inner": detectors["adf_inner"] * scale,
            "adf_outer": detectors["adf_outer"] * scale,
            "units": units,
        },
        "mean_counts_per_pattern": float(mean_data.sum()),
    }


def _log_norm(data: np.ndarray, dynamic_range: float = 1e3):
    from matplotlib.colors import LogNorm

    finite = data[np.isfinite(data)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    positive = finite[finite > 0]
    vmin = vmax / dynamic_range
    if positive.size:
        vmin = max(vmin, float(positive.min()))
    return LogNorm(vmin=min(vmin, vmax * 0.999), vmax=vmax, clip=True)


def _cmap(name: str):
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return cmap.with_extremes(bad=cmap(0.0))


def _plot_data_overview(mean, virtual, rois, signal_mask):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.7), layout="constrained")
    kx, ky = mean.axes_manager.signal_axes
    data = np.asarray(mean.data, dtype=float)
    im = axes[0].imshow(
        data,
        extent=_extent(kx, ky),
        norm=_log_norm(data, 1e4),
        cmap=_cmap("inferno"),
        aspect=_aspect(kx, ky),
        interpolation="nearest",
    )
    fig.colorbar(im, ax=axes[0], label="mean counts per pixel", shrink=0.85)
    bf, adf = rois
    axes[0].add_patch(Circle((bf.cx, bf.cy), bf.r, fill=False, color="cyan", lw=1.2))
    for r in (adf.r_inner, adf.r):
        axes[0].add_patch(Circle((adf.cx, adf.cy), r, fill=False, color="white", lw=1.0, ls="--"))
    if signal_mask is not None and np.any(signal_mask):
        yy = np.asarray(ky.axis, dtype=float)
        xx = np.asarray(kx.axis, dtype=float)
        axes[0].contour(xx, yy, np.asarray(signal_mask, float), levels=[0.5], colors="lime")
    axes[0].set_title("mean diffraction pattern (log)")
    axes[0].set_xlabel(_axis_label(kx))
    axes[0].set_ylabel(_axis_label(ky))

    x_axis, y_axis = virtual.axes_manager.signal_axes
    for ax, image, title in zip(
        axes[1:], virtual.data, ("virtual bright field", "virtual annular dark field")
    ):
        im = ax.imshow(
            np.asarray(image, dtype=float),
            extent=_extent(x_axis, y_axis),
            cmap="gray",
            aspect=_aspect(x_axis, y_axis),
            interpolation="nearest",
        )
        fig.colorbar(im, ax=ax, label="counts", shrink=0.85)
        ax.set_title(title)
        ax.set_xlabel(_axis_label(x_axis))
        ax.set_ylabel(_axis_label(y_axis))
    return fig


# -- components ----------------------------------------------------------------------------------
def plot_components(
    factors,
    loadings,
    *,
    scaling: str = "log",
    max_columns: int = 4,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    dynamic_range: float = 1e3,
):
    """Diffraction-pattern factors above their loading maps, one column per component.

    Parameters
    ----------
    factors : hyperspy.signal.BaseSignal
        (k | n_ky, n_kx): one pattern per navigation index, calibrated signal axes.
    loadings : hyperspy.signal.BaseSignal
        (k | n_x, n_y): one map per navigation index, calibrated scan axes.
    scaling : {"log", "sqrt", "linear"}
        Intensity scale of the patterns; "log" spans ``dynamic_range`` below each maximum.
    max_columns : int
        Components per row; more components wrap into further pairs of rows.
    title : str, optional
        Figure title.
    labels : sequence of str, optional
        One title per component; default "#i (share of the total intensity)".
    dynamic_range : float
        Ratio of the brightest to the faintest intensity shown with ``scaling="log"``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize, PowerNorm

    if scaling not in ("log", "sqrt", "linear"):
        raise ValueError(f"scaling must be 'log', 'sqrt' or 'linear', got {scaling!r}")
    patterns = np.asarray(factors.data, dtype=float)
    maps = np.asarray(loadings.data, dtype=float)
    if patterns.ndim == 2:
        patterns, maps = patterns[np.newaxis], maps[np.newaxis]
    k = patterns.shape[0]
    if maps.shape[0] != k:
        raise ValueError(f"{k} factors but {maps.shape[0]} loading maps")
    if labels is None:
        totals = maps.reshape(k, -1).sum(axis=1)
        share = totals / totals.sum() if totals.sum() > 0 else np.zeros(k)
        labels = [f"#{i + 1} ({s:.0%})" for i, s in enumerate(share)]
    ncols = max(1, min(k, max_columns))
    nblocks = math.ceil(k / ncols)
    width = 2.9 * ncols + 0.4
    fig, axes = plt.subplots(
        2 * nblocks,
        ncols,
        figsize=(width, 2.45 * 2 * nblocks + (0.4 if title else 0.0)),
        layout="constrained",
        squeeze=False,
    )
    kx, ky = factors.axes_manager.signal_axes
    sx, sy = loadings.axes_manager.signal_axes
    cmap_patterns = _cmap("inferno")
    for i in range(nblocks * ncols):
        block, col = divmod(i, ncols)
        top, bottom = axes[2 * block, col], axes[2 * block + 1, col]
        if i >= k:
            top.set_axis_off()
            bottom.set_axis_off()
            continue
        pattern = patterns[i]
        if scaling == "log":
            norm = _log_norm(pattern, dynamic_range)
        else:
            vmax = float(np.nanmax(pattern)) or 1.0
            norm = PowerNorm(0.5, 0, vmax) if scaling == "sqrt" else Normalize(0, vmax)
        top.imshow(
            pattern,
            extent=_extent(kx, ky),
            norm=norm,
            cmap=cmap_patterns,
            aspect=_aspect(kx, ky),
            interpolation="nearest",
        )
        top.set_title(labels[i], fontsize=10)
        im = bottom.imshow(
            maps[i],
            extent=_extent(sx, sy),
            cmap="viridis",
            vmin=0,
            aspect=_aspect(sx, sy),
            interpolation="nearest",
        )
        cbar = fig.colorbar(im, ax=bottom, shrink=0.8, pad=0.02)
        cbar.ax.tick_params(labelsize=7)
        for ax in (top, bottom):
            ax.tick_params(labelsize=7)
        if col == 0:
            top.set_ylabel(_axis_label(ky), fontsize=8)
            bottom.set_ylabel(_axis_label(sy), fontsize=8)
        top.set_xlabel(_axis_label(kx), fontsize=8)
        bottom.set_xlabel(_axis_label(sx), fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


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
