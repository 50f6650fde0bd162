"""Built-in reporters: comparison tables (CSV, Markdown, LaTeX), figures, and the HTML report.

Each reporter imports its module when it renders, so loading the plugins (every `pcnbench`
command does) does not pay for matplotlib. Methods add figures of their own through
`Method.figures`; `pcnbench_plugins.reporters.style` is the module they may draw with (the
package's one public module; the others may change).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pcnbench.api import Reporter
from pcnbench.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    import pandas as pd

    from pcnbench.api import ReportData, ReportFigure

__all__ = ["FiguresReporter", "HtmlReporter", "TablesReporter"]


class TablesReporter(Reporter):
    """comparison.csv, comparison.md and comparison.tex: one table per (dataset, model)."""

    name = "tables"
    order = 10

    def render(self, data: ReportData, out_dir: Path) -> list[Path]:
        """Write the three table exports."""
        from .tables import write_tables

        return write_tables(data, out_dir)

    def tables(self, data: ReportData) -> dict[str, pd.DataFrame]:
        """ "comparison" (comparison.csv's rows) and "references" (the published figures)."""
        from .points import operating_points
        from .tables import comparison_frame, comparison_tables, reference_frame, reference_tables

        groups = operating_points(data)
        return {
            "comparison": comparison_frame(comparison_tables(groups)),
            "references": reference_frame(reference_tables(groups)),
        }


class FiguresReporter(Reporter):
    """figures/*.svg (and .pdf, .png where `formats` asks), listed with the skipped ones in
    figures/figures.json.

    Pareto fronts and training curves, then each installed method's own `figures`. SVG is
    always written (the HTML page inlines it); set `formats` (e.g. `("svg", "pdf", "png")`)
    for the copies papers and slides want: they take most of a report's time.
    """

    name = "figures"
    order = 20

    def __init__(self, formats: Sequence[str] = ("svg",)) -> None:
        self.formats: tuple[str, ...] = tuple(formats)

    def render(self, data: ReportData, out_dir: Path) -> list[Path]:
        """Draw every figure the data supports, in `formats` and the report's `figure_formats`."""
        from .figures import write_figures

        asked = dict.fromkeys((*self.formats, *data.figure_formats))
        return write_figures(data, out_dir, tuple(asked))

    def figures(self, data: ReportData) -> list[ReportFigure]:
        """Pareto fronts, training curves and each method's figures, drawn and not saved."""
        from .figures import draw_figures

        return draw_figures(data)


class HtmlReporter(Reporter):
    """index.html: one self-contained page with the tables and the figures' SVG inlined."""

    name = "html"
    order = 90  # after the tables and figures it links to and inlines

    def render(self, data: ReportData, out_dir: Path) -> list[Path]:
        """Write index.html."""
        from .html import write_html

        return write_html(data, out_dir)


@hookimpl
def register_reporters(register: Register) -> None:
    """Register the tables, figures and HTML reporters (they run in that order)."""
    register(TablesReporter())
    register(FiguresReporter())
    register(HtmlReporter())
