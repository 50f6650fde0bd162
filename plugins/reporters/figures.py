"""Figures: the report's own (Pareto fronts, training curves) and each method's (`figures`).

Every figure is written as SVG (inlined by the HTML report) under `figures/`, and as PDF (for
papers) and PNG too where asked (the figures reporter's `formats`), with a manifest
(`figures/figures.json`) that also says which figures were skipped and why. A method's
`Method.figures(data, colors)` is called once for each method in the results whose plugin is
installed; what it returns is saved like the built-in figures, and a
method whose `figures` raises is reported as a failed figure set instead of stopping the report.
"""

from __future__ import annotations

import errno
import json
import re
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from matplotlib.layout_engine import PlaceHolderLayoutEngine

from pcnbench.api import ReportFigure

from ._atomic import write_atomic, write_text_atomic
from .curves import cumulative_epochs, curve_figures
from .pareto import pareto_figures
from .points import operating_points
from .style import method_colors, style, tidy_ticks

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pcnbench.api import ReportData

__all__ = [
    "DEFAULT_FORMATS",
    "FigureEntry",
    "check_formats",
    "cumulative_epochs",
    "method_order",
    "render_figures",
    "write_figures",
]

_EXTENSIONS = ("svg", "pdf", "png")
# What a report writes unless asked for more: the SVG the HTML page inlines. PDF and PNG cost
# most of a report's time (font subsetting, rasterizing at 200 dpi), so they are opt-in.
DEFAULT_FORMATS = ("svg",)
_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class FigureEntry:
    """One figure of the report: where it is, what it shows, or why it was skipped."""

    kind: str  # "pareto", "curves", or "method" (drawn by a method's `figures`)
    title: str
    caption: str = ""
    stem: str = ""  # file stem under figures/ (empty when skipped)
    files: list[str] = field(default_factory=list)
    skipped: str = ""  # why there is no figure
    method: str = ""  # the method whose `figures` returned it ("" for the report's own)
    error: str = ""  # the traceback, when drawing or saving it failed


def check_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """The figure formats asked for, SVG always first (the HTML page inlines it); a ValueError
    names any format the report cannot write."""
    asked = [str(f).strip().lower().lstrip(".") for f in formats]
    unknown = [f for f in asked if f not in _EXTENSIONS]
    if unknown:
        raise ValueError(
            f"unknown figure format {', '.join(map(repr, unknown))}: choose from "
            f"{', '.join(_EXTENSIONS)}"
        )
    return tuple(f for f in _EXTENSIONS if f == "svg" or f in asked)


def _save(
    fig: Any, out_dir: Path, stem: str, formats: Sequence[str] = DEFAULT_FORMATS
) -> list[str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    tidy_ticks(fig)  # last: limits and layout are final, methods' figures included
    if isinstance(fig.get_layout_engine(), PlaceHolderLayoutEngine):
        # what `tight_layout()` leaves behind: it would make every save lay out (draw) twice
        fig.set_layout_engine(None)
    files = []
    meta = {
        "svg": {"Date": None, "Creator": None},
        "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
        "png": {"Software": None},
    }
    for ext in formats:
        path = out_dir / f"{stem}.{ext}"
        options = {"format": ext, "dpi": 200 if ext == "png" else None, "metadata": meta[ext]}
        write_atomic(path, lambda tmp, kw=options: fig.savefig(tmp, **kw))
        files.append(path.name)
    return files


def _close(fig: Any) -> None:
    """Release a figure pyplot tracks (a plain `Figure` needs nothing)."""
    manager = getattr(getattr(fig, "canvas", None), "manager", None)
    if manager is not None:
        import matplotlib.pyplot as plt

        plt.close(fig)


# errors writing any file would meet too: they stop the report instead of failing one figure
_UNWRITABLE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS)


def _failure(kind: str, title: str, method: str, exc: BaseException) -> FigureEntry:
    """A figure (or a method's figure set) that raised: the reason, and its traceback."""
    why = f"failed: {type(exc).__name__}: {exc}"
    error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return FigureEntry(kind, title, skipped=why, method=method, error=error)


def _entry(
    kind: str,
    method: str,
    item: Any,
    out_dir: Path,
    used: set[str],
    formats: Sequence[str] = DEFAULT_FORMATS,
) -> FigureEntry:
    """Save one ReportFigure and describe it (skipped, or failed, with the reason)."""
    if not isinstance(item, ReportFigure):
        problem = TypeError(f"figures() returned {type(item).__name__}, not a ReportFigure")
        return _failure(kind, f"{method} figures", method, problem)
    title = item.title or item.name
    if item.figure is None:
        why = item.skipped or "nothing to draw"
        return FigureEntry(kind, title, skipped=why, method=method)
    stem = _NAME.sub("-", item.name).strip("-.")
    try:
        if not stem:
            raise ValueError("the figure has no name (ReportFigure.name is its file stem)")
        if stem in used:
            raise ValueError(f"another figure of this report is already named {stem!r}")
        files = _save(item.figure, out_dir, stem, formats)
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in _UNWRITABLE:
            raise  # the disk, not the figure: the report as a whole fails and says so
        return _failure(kind, title, method, exc)
    finally:
        _close(item.figure)
    used.add(stem)
    return FigureEntry(kind, title, item.caption, stem, files, method=method)


def _suite_methods(data: ReportData) -> list[str]:
    """Method names in the order the suite of the last run lists them ([] if unreadable)."""
    if data.runs.empty or "suite_text" not in data.runs.columns:
        return []
    text = data.runs.iloc[-1]["suite_text"]
    try:
        suite = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return []
    entries = suite.get("methods") if isinstance(suite, dict) else None
    names = [e if isinstance(e, str) else e.get("name") for e in entries or [] if e]
    return [str(n) for n in names if isinstance(n, str)]


def method_order(data: ReportData) -> list[str]:
    """Every method in the results: in the suite's order, then any others as they appear."""
    present = list(dict.fromkeys(str(m) for m in data.results.get("method", [])))
    listed = [m for m in _suite_methods(data) if m in present]
    return list(dict.fromkeys([*listed, *present]))


def draw_figures(data: ReportData) -> list[ReportFigure]:
    """Every figure the data supports, drawn (matplotlib Figures the caller closes) and not
    saved: Pareto fronts, training curves, then each installed method's own figures. A method
    whose `figures` raised contributes none here (the report says why)."""
    with style():
        return [item for _, _, item in _figures(data) if isinstance(item, ReportFigure)]


def _figures(data: ReportData) -> list[tuple[str, str, Any]]:
    """(kind, method, what its call gave) for every figure the data supports, in the report's
    order: a ReportFigure (or whatever a method returned), or the exception its call raised."""
    groups = operating_points(data)
    order = method_order(data)
    colors = method_colors(order)
    out: list[tuple[str, str, Any]] = []
    if groups:
        out += [("pareto", "", item) for item in pareto_figures(groups, colors)]
        out += [("curves", "", item) for item in curve_figures(data, groups, colors)]
    for name in order:
        if name in data.methods:
            try:
                items = list(data.methods[name].figures(data, colors))
            except Exception as exc:
                out.append(("method", name, exc))
                continue
            out += [("method", name, item) for item in items]
    return out


def render_figures(
    data: ReportData, out_dir: Path, formats: Sequence[str] = DEFAULT_FORMATS
) -> list[FigureEntry]:
    """Draw every figure the data supports under `out_dir` (SVG, plus `formats`); skipped
    ones say why."""
    formats = check_formats(formats)
    entries: list[FigureEntry] = []
    used: set[str] = set()
    with style():
        if not operating_points(data):
            why = "no finished results yet"
            entries += [
                FigureEntry("pareto", "Pareto fronts", skipped=why),
                FigureEntry("curves", "Training curves", skipped=why),
            ]
        for kind, method, item in _figures(data):
            if isinstance(item, Exception):
                entries.append(_failure("method", f"{method} figures", method, item))
            else:
                entries.append(_entry(kind, method, item, out_dir, used, formats))
    return entries


def _old_files(fig_dir: Path) -> list[Path]:
    """The figure files an earlier report wrote, as its manifest lists them."""
    found = []
    manifest = fig_dir / "figures.json"
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else []
    except ValueError:
        entries = []
    for entry in entries if isinstance(entries, list) else []:
        for name in entry.get("files", []) if isinstance(entry, dict) else []:
            path = fig_dir / Path(str(name)).name
            if path.suffix[1:] in _EXTENSIONS:
                found.append(path)
    return found


def write_figures(
    data: ReportData, out_dir: Path, formats: Sequence[str] = DEFAULT_FORMATS
) -> list[Path]:
    """Draw the figures under `out_dir`/figures (SVG, plus `formats`) and write the manifest
    the HTML report reads."""
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    for old in _old_files(fig_dir):
        old.unlink(missing_ok=True)
    entries = render_figures(data, fig_dir, formats)
    manifest = fig_dir / "figures.json"
    write_text_atomic(manifest, json.dumps([asdict(e) for e in entries], indent=1))
    return [fig_dir / f for e in entries for f in e.files] + [manifest]
