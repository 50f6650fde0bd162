"""Published references (`references:`) in the report: hollow markers beside the Pareto points,
never in a frontier, and a table of their own beside the comparison tables."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from pcnbench.report import load_report_data
from pcnbench_plugins.reporters.pareto import pareto_figures
from pcnbench_plugins.reporters.points import operating_points
from pcnbench_plugins.reporters.tables import comparison_tables, reference_tables, write_tables

from .reportdata import published_references, report_host, write_synthetic_results


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The synthetic report data without references."""
    out = write_synthetic_results(tmp_path_factory.mktemp("refs"))
    return load_report_data(out, report_host())


def _with_refs(data: Any) -> Any:
    return dataclasses.replace(data, references=published_references())


def _figure(data: Any, name: str) -> Any:
    colors: dict[str, str] = defaultdict(lambda: "#1f77b4")
    for item in pareto_figures(operating_points(data), colors):
        if item.name == name:
            return item
    raise AssertionError(f"no figure {name}")


def _hollow_diamonds(ax: Any) -> list[tuple[float, float]]:
    found = []
    for line in ax.get_lines():
        if line.get_marker() == "D" and line.get_markerfacecolor() == "none":
            found += list(zip(line.get_xdata(), line.get_ydata(), strict=True))
    return found


def _frontier(ax: Any) -> list[tuple[float, float]]:
    lines = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(lines) == 1
    return list(zip(lines[0].get_xdata(), lines[0].get_ydata(), strict=True))


def test_params_figure_draws_each_reference_hollow_and_labelled_outside_the_frontier(
    plain: Any,
) -> None:
    before = _figure(plain, "pareto-cifar10-parameters").figure.axes[0]
    item = _figure(_with_refs(plain), "pareto-cifar10-parameters")
    ax = item.figure.axes[0]
    assert sorted(_hollow_diamonds(ax)) == [(50_000, 98.0), (100_000, 99.0)]
    texts = [t.get_text() for t in ax.texts]
    assert "Paper ResNet-20 dense (published)" in texts
    assert "Paper ResNet-20 PCN (published)" in texts
    assert not any("Elsewhere" in t for t in texts)  # another dataset's reference
    # both references dominate every result, yet the frontier is the results' own
    assert _frontier(ax) == _frontier(before)
    assert "references" in item.caption
    assert ax.get_xlim()[0] < 50_000  # the axis takes them in


def test_macs_figure_skips_a_reference_without_macs(plain: Any) -> None:
    ax = _figure(_with_refs(plain), "pareto-cifar10-inference-macs").figure.axes[0]
    assert _hollow_diamonds(ax) == [(1_000_000, 98.0)]


def test_costs_a_reference_cannot_have_draw_none(plain: Any) -> None:
    ax = _figure(_with_refs(plain), "pareto-cifar10-training-time").figure.axes[0]
    assert _hollow_diamonds(ax) == []


def test_tables_list_references_apart_and_never_mark_them_best(plain: Any, tmp_path: Path) -> None:
    data = _with_refs(plain)
    groups = operating_points(data)
    tables = comparison_tables(groups)
    plain_tables = comparison_tables(operating_points(plain))
    # the comparison tables are unchanged: same rows, same best marks
    assert [t.rows for t in tables] == [t.rows for t in plain_tables]
    assert [t.best for t in tables] == [t.best for t in plain_tables]
    refs = reference_tables(groups)
    assert [(t.dataset, [r.label for r in t.references]) for t in refs] == [
        ("cifar10", ["Paper ResNet-20 dense", "Paper ResNet-20 PCN"])
    ]
    written = write_tables(data, tmp_path)
    assert tmp_path / "references.csv" in written
    md = (tmp_path / "comparison.md").read_text(encoding="utf-8")
    section = md[md.index("## cifar10 · published references") :]
    assert "He et al. 2016, Table 6" in section and "| 99.00 |" in section
    assert "**" not in section  # nothing marked best
    assert "Paper ResNet" not in md[: md.index("## cifar10 · published references")]
    tex = (tmp_path / "comparison.tex").read_text(encoding="utf-8")
    assert "published references" in tex and "He et al. 2016, Table 6" in tex
    csv = (tmp_path / "references.csv").read_text(encoding="utf-8")
    assert "https://example.org/paper (Table 2)" in csv and "Elsewhere" not in csv


def test_without_references_no_reference_table_or_file(plain: Any, tmp_path: Path) -> None:
    assert reference_tables(operating_points(plain)) == []
    written = write_tables(plain, tmp_path)
    assert not (tmp_path / "references.csv").exists() and len(written) == 3
    assert "published references" not in (tmp_path / "comparison.md").read_text(encoding="utf-8")


def test_the_html_page_lists_references_in_a_table_of_their_own(plain: Any, tmp_path: Path) -> None:
    from pcnbench_plugins.reporters.html import render_html

    page = render_html(_with_refs(plain), tmp_path)
    start = page.index('<h3 class="references">cifar10 · published references</h3>')
    section = page[start : page.index("</table>", start)]
    assert "Paper ResNet-20 dense" in section and "He et al. 2016, Table 6" in section
    assert "Paper ResNet" not in page[:start]  # not among the comparison rows
    assert 'class="references"' not in render_html(plain, tmp_path)
