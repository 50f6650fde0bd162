"""Reports: interval and paired-delta math, Pareto fronts, tables and exports, headline, HTML."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from pcnbench.api import Method, Params, ReportData, ReportFigure
from pcnbench.hookspecs import Register, hookimpl
from pcnbench.manager import load_plugins
from pcnbench.report import build_report, load_report_data
from pcnbench.store import SETTING_COLUMNS, Store
from pcnbench_plugins.reporters.curves import cumulative_epochs
from pcnbench_plugins.reporters.figures import render_figures
from pcnbench_plugins.reporters.html import inline_svg, render_html
from pcnbench_plugins.reporters.points import model_groups, operating_points
from pcnbench_plugins.reporters.stats import (
    best_indices,
    best_of,
    mean_ci,
    paired_delta,
    pareto_front,
    same,
    t_quantile,
)
from pcnbench_plugins.reporters.summary import finding, headline
from pcnbench_plugins.reporters.tables import (
    comparison_frame,
    comparison_tables,
    fmt_estimate,
    fmt_si,
    fmt_times,
    to_latex,
    to_markdown,
)

from .reportdata import TRACEBACK, fake_cell, report_host, write_synthetic_results

T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 10: 2.2281, 30: 2.0423}


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic suite's results with the full report built by the registered reporters."""
    out = write_synthetic_results(tmp_path_factory.mktemp("synth"))
    build_report(out, report_host())
    return out


@pytest.fixture(scope="module")
def tables(report_dir: Path) -> list:
    return comparison_tables(operating_points(load_report_data(report_dir, report_host())))


def _row(table, method: str, setting: str = "") -> dict:
    return next(r for r in table.rows if r["method"] == method and r["setting"] == setting)


# Statistics -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("df", "expected"), sorted(T975.items()))
def test_t_quantile_matches_student_t_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_t_quantile_is_symmetric_and_approaches_normal() -> None:
    assert t_quantile(0.025, 4) == pytest.approx(-2.7764, abs=1e-4)
    assert t_quantile(0.975, 10_000) == pytest.approx(1.9602, abs=1e-3)


def test_mean_ci_is_mean_plus_minus_t_s_over_root_n() -> None:
    est = mean_ci([0.90, 0.92, 0.94])
    assert est.mean == pytest.approx(0.92)
    assert est.n == 3
    assert est.std == pytest.approx(0.02)
    assert est.half_width == pytest.approx(4.3027 * 0.02 / math.sqrt(3), rel=1e-4)


def test_mean_ci_single_seed_has_no_interval_and_nan_is_ignored() -> None:
    one = mean_ci([0.9, math.nan, None])
    assert one.mean == 0.9
    assert one.n == 1
    assert one.half_width is None
    assert mean_ci([]) is None
    assert fmt_estimate(one) == "90.00"


def test_paired_delta_uses_only_the_seeds_both_have() -> None:
    method = {0: 0.90, 1: 0.80, 2: 0.85}
    dense = {0: 0.91, 1: 0.82, 3: 0.50}  # seed 3 alone would drag an unpaired mean down
    delta = paired_delta(method, dense)
    assert delta.n == 2
    assert delta.mean == pytest.approx(-0.015)
    std = math.sqrt(((-0.01 + 0.015) ** 2 + (-0.02 + 0.015) ** 2) / 1)
    assert delta.half_width == pytest.approx(12.7062 * std / math.sqrt(2), rel=1e-4)
    assert paired_delta({0: 0.9}, {1: 0.9}) is None


def test_pareto_front_keeps_only_non_dominated_points() -> None:
    costs = [10, 20, 30, 40, 20, 5, math.nan]
    accs = [0.50, 0.70, 0.60, 0.90, 0.70, 0.40, 0.99]
    # 30/0.60 is beaten by 20/0.70; the two 20/0.70 twins both stay; NaN never counts.
    assert pareto_front(costs, accs) == [5, 0, 1, 4, 3]


# Issue 11: two means of the same accuracy summed in another order.
PCN_ACC, LOTTERY_ACC = 97.22222222222223, 97.22222222222221


def test_pareto_front_counts_rounding_noise_as_a_tie() -> None:
    # lottery level=3 has half pcn keep=f0.0625's parameters and the same accuracy: it dominates.
    assert pareto_front([2_000, 1_000], [PCN_ACC, LOTTERY_ACC]) == [1]
    assert pareto_front([1_000, 2_000], [LOTTERY_ACC, PCN_ACC]) == [0]
    # The same cost and accuracy up to the last bits: twins, both stay.
    assert pareto_front([1_000.0, 1_000.0000000000001], [PCN_ACC, LOTTERY_ACC]) == [0, 1]
    # The same cost up to the last bits, one clearly more accurate: only that one.
    assert pareto_front([1_000.0000000000001, 1_000.0], [97.5, PCN_ACC]) == [0]
    assert pareto_front([1_000, 2_000], [97.0, 97.1]) == [0, 1]  # 0.1 pp is no tie


def test_one_tolerance_for_equal_across_the_reporters() -> None:
    assert same(PCN_ACC, LOTTERY_ACC) and not same(97.2222, 97.2223)
    assert best_indices([PCN_ACC, LOTTERY_ACC, 90.0], higher_is_better=True) == {0, 1}
    assert best_indices([1e-13, 0.0, 0.5], higher_is_better=False) == {0, 1}
    assert best_indices([0.0001, 0.0002], higher_is_better=False) == {0}
    items = [("a", 3.3333333333333335, 0.1), ("b", 3.333333333333333, 0.2), ("c", 2.0, 0.9)]
    # `max(key=(compression, accuracy))` would take "a" on its last bit of compression.
    assert best_of(items, lambda x: x[1], lambda x: x[2])[0] == "b"
    assert best_of(items, lambda x: x[2])[0] == "c"
    assert best_of([("x", PCN_ACC), ("y", LOTTERY_ACC)], lambda x: x[1])[0] == "x"  # first


def test_best_indices_marks_ties_and_skips_lone_values() -> None:
    assert best_indices([3.0, 1.0, 1.0, None], higher_is_better=False) == {1, 2}
    assert best_indices([3.0, 1.0, math.nan], higher_is_better=True) == {0}
    assert best_indices([3.0, None], higher_is_better=True) == set()


def test_number_formats() -> None:
    assert fmt_si(40_800_000) == "40.8M"
    assert fmt_si(8_832) == "8.83k"
    assert fmt_si(math.nan) == "—"
    assert fmt_times(7.897) == "7.9×"
    assert fmt_times(1.049) == "1.05×"
    assert fmt_estimate(mean_ci([-0.002, -0.001, -0.003]), signed=True) == "−0.20 ± 0.25"


# Tables ---------------------------------------------------------------------------------------


def test_tables_group_by_model_with_dense_first_and_one_row_per_operating_point(
    tables: list,
) -> None:
    assert [t.title for t in tables] == ["cifar10 · resnet(depth=20)", "cifar10 · resnet(depth=56)"]
    first = tables[0]
    labels = [(r["method"], r["setting"]) for r in first.rows]
    assert labels == [
        ("dense", ""),
        ("pcn", "keep=f0.25"),
        ("pcn", "keep=f0.5"),
        ("magnitude", "sparsity=0.9"),
        ("lottery", "level=1"),
        ("lottery", "level=2"),
        ("lottery", "level=3"),
    ]
    assert all(r["n"] == 3 for r in first.rows)


def test_table_numbers_are_paired_deltas_and_ratios_against_dense(tables: list) -> None:
    first = tables[0]
    pcn = _row(first, "pcn", "keep=f0.25")
    assert pcn["compression"] == pytest.approx(272_474 / 34_500)
    assert pcn["speedup"] == pytest.approx(40_800_000 / 5_100_000)
    assert pcn["accuracy"].mean == pytest.approx(0.915)
    assert pcn["delta"].mean == pytest.approx(-0.002)
    assert pcn["delta"].half_width == pytest.approx(4.3027 * 0.001 / math.sqrt(3), rel=1e-4)
    level3 = _row(first, "lottery", "level=3")
    assert level3["delta"].mean == pytest.approx(-0.003)
    assert level3["epochs"] == pytest.approx(20 + 3 * 18)
    assert _row(first, "dense")["delta"] is None


def test_best_value_per_column_is_marked(tables: list) -> None:
    first = tables[0]
    index = {(r["method"], r["setting"]): i for i, r in enumerate(first.rows)}
    magnitude = index[("magnitude", "sparsity=0.9")]
    assert first.best["params"] == {magnitude}
    assert first.best["compression"] == {magnitude}
    assert first.best["accuracy"] == {index[("pcn", "keep=f0.5")]}
    assert first.best["delta"] == {index[("pcn", "keep=f0.5")]}
    assert index[("dense", "")] not in first.best["delta"]
    # Latency is not measured for the lottery rows: they can never be best.
    assert first.best["latency_ms"] == {magnitude}


def test_energy_labels_say_how_it_was_obtained(tables: list) -> None:
    first = tables[0]
    assert _row(first, "dense")["energy_label"] == "gpu: nvml"
    assert _row(first, "magnitude", "sparsity=0.9")["energy_label"] == "estimated"
    assert not first.energy_shared
    assert tables[1].energy_shared
    assert "Training energy: gpu: nvml." in tables[1].notes


def test_masked_models_are_flagged_in_the_notes(tables: list) -> None:
    assert any(n.startswith("Masked models (magnitude, lottery):") for n in tables[0].notes)
    assert not any(n.startswith("Masked models") for n in tables[1].notes)


def test_csv_export_holds_the_numbers(report_dir: Path, tables: list) -> None:
    csv = pd.read_csv(report_dir / "comparison.csv")
    assert len(csv) == 7 + 2
    row = csv[(csv["method"] == "pcn") & (csv["setting"] == "keep=f0.25")].iloc[0]
    assert row["model"] == "resnet(depth=20)"
    assert row["accuracy_pct"] == pytest.approx(91.5)
    assert row["delta_acc_pp"] == pytest.approx(-0.2)
    assert row["delta_ci95_pp"] == pytest.approx(0.2484, abs=1e-3)
    assert row["delta_n_pairs"] == 3
    assert row["params"] == 34_500
    assert row["energy_label"] == "gpu: nvml"
    assert comparison_frame(tables).shape[0] == len(csv)


def test_markdown_export_has_a_table_per_model_with_best_in_bold(tables: list) -> None:
    md = to_markdown(tables)
    assert "## cifar10 · resnet(depth=20)" in md
    assert "## cifar10 · resnet(depth=56)" in md
    assert "| pcn | keep=f0.25 | 3 | 34,500 | 7.9× | 5.10M | 8.0× | 91.50 ± 0.25 |" in md
    assert "−0.20 ± 0.25" in md
    assert "**27,247**" in md
    assert "**91.80 ± 0.75**" in md
    assert md.count("|:--|:--|--:|") == 2


def test_latex_export_is_booktabs_with_escapes_and_marks(tables: list) -> None:
    tex = to_latex(tables)
    assert tex.count(r"\begin{tabular}") == 2
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in tex
    assert r"\textbf{27,247}" in tex
    assert r"$-$0.20 $\pm$ 0.25" in tex
    assert r"7.9$\times$" in tex
    assert r"Acc.\ (\%)" in tex
    assert "cifar10 $\\cdot$ resnet(depth=20)" in tex
    assert "±" not in tex and "×" not in tex and "−" not in tex  # all in LaTeX commands
    line = next(ln for ln in tex.splitlines() if ln.startswith("pcn & keep=f0.25"))
    assert line.endswith(r"\\")
    assert line.count("&") == 12  # every column present: energy and latency were measured


def test_latex_leaves_out_columns_nobody_measured(tmp_path: Path) -> None:
    frame = _frame([("dense", "{}", 0, 0.9, 100), ("dense", "{}", 1, 0.92, 100)])
    tex = to_latex(comparison_tables(model_groups(frame)))
    assert "Not measured: train energy, latency." in tex
    assert "Energy (J)" not in tex


# Headline -------------------------------------------------------------------------------------


def _frame(rows: list[tuple]) -> pd.DataFrame:
    """Results rows (method, method_params, seed, accuracy, params) of one model."""
    out = []
    for i, (method, params, seed, acc, count) in enumerate(rows):
        shown = json.loads(params)
        inner = ",".join(f"{k}={v}" for k, v in shown.items())
        out.append(
            {
                "cell_id": f"c{method}{params}{seed}",
                "label": f"digits · mlp · {method}{f'({inner})' if inner else ''} · seed {seed}",
                "dataset": "digits",
                "dataset_params": "{}",
                "model": "mlp",
                "model_params": "{}",
                "method": method,
                "method_params": params,
                "seed": seed,
                "status": "done",
                "error": None,
                "result": 0,
                "params": count,
                "dense_params": 100,
                "macs": count,
                "dense_macs": 100,
                "accuracy": acc,
                "train_time_s": 1.0 + i,
                "epochs_trained": 10.0,
            }
        )
    return pd.DataFrame(out)


def test_headline_names_the_most_compressed_setting_that_matches_dense() -> None:
    frame = _frame(
        [
            ("dense", "{}", 0, 0.900, 100),
            ("dense", "{}", 1, 0.910, 100),
            ("pcn", '{"keep": "f0.5"}', 0, 0.901, 50),
            ("pcn", '{"keep": "f0.5"}', 1, 0.909, 50),
            ("pcn", '{"keep": "f0.1"}', 0, 0.898, 10),
            ("pcn", '{"keep": "f0.1"}', 1, 0.906, 10),
            ("pcn", '{"keep": "f0.05"}', 0, 0.850, 5),  # smaller still, but 5 pp worse
            ("pcn", '{"keep": "f0.05"}', 1, 0.860, 5),
        ]
    )
    text = headline(model_groups(frame))
    assert text == (
        "pcn keep=f0.1 comes within 0.5 pp of dense accuracy on average (Δ −0.30 ± 1.27 pp, "
        "2 seeds) with 10.0× fewer parameters, but with 2 seeds the interval cannot rule out "
        "a larger loss."
    )


def test_headline_picks_the_most_compressed_match_and_qualifies_a_wide_interval() -> None:
    rows = [("dense", "{}", s, 0.900 + 0.01 * s, 100) for s in range(3)]
    # f0.5: tight pairs (Δ −0.07 ± 0.14 pp); f0.1: 5× smaller, same mean Δ, pairs ±1 pp apart.
    rows += [
        ("pcn", '{"keep": "f0.5"}', s, 0.899 + 0.01 * s + 0.001 * (s == 1), 50) for s in range(3)
    ]
    rows += [
        ("pcn", '{"keep": "f0.1"}', s, 0.899 + 0.01 * s + 0.01 * (s - 1), 10) for s in range(3)
    ]
    groups = model_groups(_frame(rows))
    assert headline(groups).startswith(
        "pcn keep=f0.1 comes within 0.5 pp of dense accuracy on average (Δ −0.10 ± 2.48 pp"
    )
    rows = [r for r in rows if "f0.1" not in r[1]]
    assert headline(model_groups(_frame(rows))) == (
        "pcn keep=f0.5 matches dense accuracy (Δ −0.07 ± 0.14 pp, 3 seeds) "
        "with 2.0× fewer parameters."
    )


def test_headline_says_beats_only_when_the_whole_interval_is_above_dense() -> None:
    rows = [("dense", "{}", s, 0.90 + 0.001 * s, 100) for s in range(3)]
    rows += [
        ("pcn", '{"keep": "f0.5"}', s, 0.92 + 0.001 * s + 0.001 * (s == 1), 50) for s in range(3)
    ]
    assert headline(model_groups(_frame(rows))).startswith(
        "pcn keep=f0.5 beats dense accuracy (Δ +2.03 ± 0.14 pp, 3 seeds)"
    )


def test_headline_says_so_when_no_setting_matches_dense() -> None:
    frame = _frame(
        [
            ("dense", "{}", 0, 0.90, 100),
            ("magnitude", '{"sparsity": 0.9}', 0, 0.85, 10),
            ("magnitude", '{"sparsity": 0.5}', 0, 0.88, 50),
        ]
    )
    text = headline(model_groups(frame))
    assert text == (
        "No reduced model matches dense accuracy within 0.5 pp; the closest is magnitude "
        "sparsity=0.5 (Δ −2.00 pp, 1 seed, no interval) with 2.0× fewer parameters."
    )
    assert not finding(model_groups(frame)[0]).matches


def test_headline_ties_are_within_the_tolerance() -> None:
    # Δ = 0.900 − 0.905 = −0.0050000000000000044 in floats: exactly the 0.5 pp tolerance.
    rows = [("dense", "{}", 0, 0.905, 100), ("pcn", '{"keep": "f0.5"}', 0, 0.900, 50)]
    assert headline(model_groups(_frame(rows))).startswith(
        "pcn keep=f0.5 comes within 0.5 pp of dense accuracy on average (Δ −0.50 pp, 1 seed"
    )
    # Compression 3.3333333333333335 against 3.333333333333333: a tie, so accuracy decides.
    rows = [("dense", "{}", 0, 0.90, 100), ("pcn", '{"keep": "lean"}', 0, 0.899, 30.0)]
    rows += [("pcn", '{"keep": "exact"}', 0, 0.90, 30.000000000000004)]
    assert headline(model_groups(_frame(rows))).startswith("pcn keep=exact comes within")


def test_markdown_and_latex_exports_escape_what_the_suite_wrote() -> None:
    rows = [("dense", "{}", s, 0.90, 100) for s in (0, 1)]
    rows += [("pcn", '{"keep": "<script>alert(1)</script>", "tag": "<b>x</b>"}', 0, 0.9, 50)]
    rows += [("pcn", '{"keep": "f0.1", "tag": "<b>x</b>"}', 0, 0.89, 10)]
    rows += [("pcn", '{"keep": "a|b & c_d%", "tag": "<b>x</b>"}', 0, 0.88, 20)]
    frame = _frame(rows)
    frame["model_params"] = '{"act": "<i>relu</i>"}'
    frame["model_setting"] = frame["model_params"]
    tables = comparison_tables(model_groups(frame))
    md = to_markdown(tables)
    for raw in ("<script>", "<b>", "<i>", "</"):
        assert raw not in md
    assert "## digits · mlp(act=&lt;i&gt;relu&lt;/i&gt;)" in md
    assert "| pcn | keep=&lt;script&gt;alert(1)&lt;/script&gt; | 1 |" in md
    assert r"| pcn | keep=a\|b &amp; c_d% | 1 |" in md
    assert "*All pcn rows use tag=&lt;b&gt;x&lt;/b&gt;.*" in md
    tex = to_latex(tables)
    assert "<" not in tex and ">" not in tex and "a|b" not in tex
    assert r"keep=\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{}" in tex
    assert r"keep=a\textbar{}b \& c\_d\%" in tex
    assert r"tag=\textless{}b\textgreater{}x" in tex


def test_headline_on_the_synthetic_suite(report_dir: Path) -> None:
    groups = operating_points(load_report_data(report_dir, report_host()))
    assert headline(groups) == (
        "On cifar10 · resnet(depth=20), pcn keep=f0.25 matches dense accuracy "
        "(Δ −0.20 ± 0.25 pp, 3 seeds) with 7.9× fewer parameters."
    )


def test_headline_with_only_dense_results_and_with_none() -> None:
    assert (
        headline([], cells_total=4, cells_done=0) == "No results yet: 0 of 4 cells have finished."
    )
    text = headline(model_groups(_frame([("dense", "{}", 0, 0.9, 100)])))
    assert text.startswith("Only dense baselines have results so far")


# HTML -----------------------------------------------------------------------------------------


def test_html_report_is_self_contained(report_dir: Path) -> None:
    html = (report_dir / "index.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", html, re.I)
    assert "@import" not in html and "<link" not in html.lower()
    assert html.count("<svg") == len(
        [e for e in json.loads((report_dir / "figures" / "figures.json").read_text()) if e["stem"]]
    )
    # Inlined figures must not collide on element ids.
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))


def test_html_report_has_every_section_and_the_headline(report_dir: Path) -> None:
    html = (report_dir / "index.html").read_text(encoding="utf-8")
    for section in ("summary", "tables", "figures", "failed", "provenance"):
        assert f'<section id="{section}">' in html
    assert "pcn keep=f0.25 matches dense accuracy" in html
    assert "0123456789abcdef0123456789abcdef01234567" in html  # git commit
    assert "NVIDIA H100 80GB HBM3" in html
    assert "description: Synthetic results for the report tests." in html  # suite as run
    for name in ("comparison.csv", "comparison.md", "comparison.tex"):
        assert f'href="{name}"' in html
    assert 'class="r best"' in html


def test_partial_results_show_failed_and_unfinished_cells(report_dir: Path) -> None:
    html = (report_dir / "index.html").read_text(encoding="utf-8")
    failed = html[html.index('<section id="failed">') : html.index('<section id="provenance">')]
    assert "RuntimeError: rank 0 leaves nothing to train" in failed
    assert "lowrank · seed 0" in failed and "lowrank · seed 1" in failed
    assert ">running<" in failed and ">failed<" in failed
    assert TRACEBACK.splitlines()[1].strip().replace('"', "&#34;") in failed


def test_figures_cover_every_kind_and_write_svg_by_default(report_dir: Path) -> None:
    entries = json.loads((report_dir / "figures" / "figures.json").read_text())
    drawn = {(e["kind"], e["method"], e["title"]) for e in entries if e["stem"]}
    kinds = {(k, m) for k, m, _ in drawn}
    # the report's own figures, then the methods' own: PCN spectra and IMP levels
    assert kinds == {("pareto", ""), ("curves", ""), ("method", "pcn"), ("method", "lottery")}
    assert ("method", "pcn", "cifar10 · resnet(depth=20): PCN spectra") in drawn
    assert (
        "method",
        "lottery",
        "cifar10 · resnet(depth=20): IMP accuracy against density",
    ) in drawn
    for entry in entries:
        if entry["stem"]:
            # SVG only unless asked: PDF and PNG were most of a report's time
            assert entry["files"] == [f"{entry['stem']}.svg"]
            assert (report_dir / "figures" / f"{entry['stem']}.svg").stat().st_size > 1000
            assert not (report_dir / "figures" / f"{entry['stem']}.pdf").exists()
    skipped = {e["title"]: e["skipped"] for e in entries if not e["stem"]}
    assert skipped["cifar10 · resnet(depth=56): IMP accuracy against density"] == (
        "no lottery results"
    )
    html = (report_dir / "index.html").read_text(encoding="utf-8")
    for stem, caption in (
        ("pcn-spectra-cifar10-resnet-depth-20", "Cumulative fraction of the input variance"),
        ("lottery-imp-cifar10-resnet-depth-20", "Each lottery level prunes a further fraction"),
    ):
        figure = html[html.index(f'<figure id="fig-{stem}"') :]
        assert "<svg" in figure[: figure.index("</figure>")]
        assert caption in figure[: figure.index("</figure>")]


def test_report_with_nothing_finished_renders_and_skips_figures(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    run = store.begin_run("empty", "suite.yaml", "0" * 64, "name: empty\n", ["pcnbench"], {})
    cell = type("Cell", (), {})()
    cell.id, cell.suite, cell.seed = "abc", "empty", 0
    cell.label = "digits · mlp · dense · seed 0"
    cell.config = {
        "dataset": {"name": "digits", "params": {}},
        "model": {"name": "mlp", "params": {}},
        "method": {"name": "dense", "params": {}},
    }
    store.start_cell(cell, run, "cpu")
    store.close()
    data = load_report_data(tmp_path)
    entries = render_figures(data, tmp_path / "figures")
    assert all(e.skipped == "no finished results yet" for e in entries)
    html = render_html(data, tmp_path)
    assert "No results yet: 0 of 1 cells have finished." in html
    assert "digits · mlp · dense · seed 0" in html


def test_reporters_are_registered_plugins_in_order() -> None:
    host = load_plugins()
    names = host.reporters.names()
    assert {"tables", "figures", "html"} <= set(names)
    order = sorted(names, key=lambda n: host.reporters.get(n).order)
    assert order.index("html") > order.index("figures") > order.index("tables")


def test_cumulative_epochs_continue_after_a_rewind() -> None:
    assert cumulative_epochs([1, 2, 3, 4]) == [1, 2, 3, 4]
    # Rewound to epoch 1 after epoch 4: the next epoch (2) is the 5th trained.
    assert cumulative_epochs([1, 2, 3, 4, 2, 3, 4]) == [1, 2, 3, 4, 5, 6, 7]


def test_inline_svg_drops_the_prolog_and_prefixes_ids() -> None:
    svg = (
        '<?xml version="1.0"?>\n<!DOCTYPE svg>\n<svg xmlns="http://www.w3.org/2000/svg">'
        '<defs><path id="m1"/><clipPath id="p2"/></defs>'
        '<use xlink:href="#m1"/><g clip-path="url(#p2)"/></svg>'
    )
    out = inline_svg(svg, "f3")
    assert out.startswith("<svg")
    assert 'id="f3-m1"' in out and 'xlink:href="#f3-m1"' in out and "url(#f3-p2)" in out


def test_a_failing_reporter_does_not_stop_the_others(tmp_path: Path) -> None:
    from pcnbench.api import Reporter
    from pcnbench.report import ReportError

    class Broken(Reporter):
        name, order = "broken", 5

        def render(self, data, out_dir):
            raise RuntimeError("no ink")

    real = report_host().reporters
    every = {name: real.get(name) for name in real.names()} | {"broken": Broken()}
    host = type("Host", (), {})()
    host.reporters = type(
        "Registry", (), {"names": lambda self: sorted(every), "get": lambda self, n: every[n]}
    )()
    out = write_synthetic_results(tmp_path)
    with pytest.raises(ReportError, match="reporter 'broken': RuntimeError: no ink"):
        build_report(out, host)
    assert (out / "index.html").is_file()
    assert (out / "comparison.tex").is_file()


def test_parameters_shared_by_every_setting_move_to_a_note(tables: list) -> None:
    frame = _frame(
        [
            ("dense", "{}", 0, 0.90, 100),
            ("pcn", '{"keep": "f0.5", "at_epoch": 3}', 0, 0.90, 50),
            ("pcn", '{"keep": "f0.1", "at_epoch": 3}', 0, 0.89, 10),
        ]
    )
    (table,) = comparison_tables(model_groups(frame))
    assert [r["setting"] for r in table.rows] == ["", "keep=f0.5", "keep=f0.1"]
    assert "All pcn rows use at_epoch=3." in table.notes
    # One setting with several results (lottery levels): the rows differ by level only.
    lottery = [r["setting"] for r in tables[0].rows if r["method"] == "lottery"]
    assert lottery == ["level=1", "level=2", "level=3"]
    assert "All lottery rows use levels=3, rewind=2ep." in tables[0].notes
    # A method with a single point keeps its parameters in the row.
    lone = _frame([("dense", "{}", 0, 0.90, 100), ("lowrank", '{"rank": "e0.9"}', 0, 0.9, 60)])
    (table,) = comparison_tables(model_groups(lone))
    assert table.rows[1]["setting"] == "rank=e0.9"
    assert not any("rows use" in n for n in table.notes)


def test_sharing_sentence_counts_each_cell_once_at_its_cumulative_cost():
    import pandas as pd

    from pcnbench_plugins.reporters.summary import sharing_sentence

    frame = pd.DataFrame(
        {
            "cell_id": ["dense", "imp", "imp", "pcn"],
            "train_time_s": [10.0, 12.0, 20.0, 10.0],
            "incurred_time_s": [10.0, 2.0, 10.0, 5.0],
            "trunk_reused_epochs": [0.0, 10.0, 10.0, 5.0],
        }
    )
    # as if alone 10 + 20 + 10 = 40 s; spent 10 + 10 + 5 = 25 s; reused 10 + 5 epochs
    assert sharing_sentence(frame) == (
        "The shared dense trunk saved 15.0 s of 40.0 s of training (38%): cells reused 15 "
        "epochs of dense training from cells with the same dataset, model, seed and recipe. "
        "Tables and figures charge every cell as if it had run alone."
    )
    assert sharing_sentence(frame.drop(columns="incurred_time_s")) is None
    assert sharing_sentence(frame.assign(trunk_reused_epochs=0.0)) is None


# Structured settings and methods' own figures ----------------------------------------------


class SketchParams(Params):
    """Parameters of the test-only `sketch` method."""

    rank: int = 4
    layers: str = "all"


class Sketch(Method):
    """A third-party-like method: two stages per cell, and one figure of its own."""

    name = "sketch"
    Params = SketchParams
    point_keys = ("stage",)

    def run(self, session, params) -> None:
        """Never run here: the test writes its results directly."""
        raise NotImplementedError

    def figures(self, data: ReportData, colors: Mapping[str, str]) -> list[ReportFigure]:
        """Accuracy per stage, plus a figure it has nothing for."""
        rows = data.results[data.results["method"] == self.name]
        assert set(rows["method_setting"].map(json.dumps)) == {'{"rank": 8}'}
        assert data.methods[self.name] is self
        fig = Figure(figsize=(4, 3))
        ax = fig.subplots()
        ax.plot(rows["stage"], rows["accuracy"] * 100, color=colors[self.name], marker="o")
        ax.set_xlabel("Stage")
        return [
            ReportFigure(
                "sketch-stages",
                "Sketch: accuracy per stage",
                "Sketched layers recover accuracy stage by stage.",
                figure=fig,
            ),
            ReportFigure(
                "sketch-ranks", "Sketch: ranks", "", skipped="no rank sweep in this suite"
            ),
        ]


class Broken(Method):
    """A method whose figures raise."""

    name = "broken"

    def figures(self, data: ReportData, colors: Mapping[str, str]) -> list[ReportFigure]:
        """Fail the way a plugin bug would."""
        raise RuntimeError("no ink for broken figures")


class ThirdParty:
    """A plugin object registering the test-only methods."""

    @hookimpl
    def register_methods(self, register: Register) -> None:
        """Register `sketch` and `broken`."""
        register(Sketch())
        register(Broken())


def _small_suite(out: Path, cells: list[tuple[object, list[dict]]]) -> Path:
    """A results database holding `cells` (each with its result rows) over a dense baseline."""
    store = Store(out / "results.db")
    run = store.begin_run("small", "small.yaml", "0" * 64, "name: small\n", ["pcnbench"], {})
    for seed in (0, 1):
        dense = fake_cell("small", {"width": 8}, "dense", {}, seed, dataset="digits")
        cells = [(dense, [{"accuracy": 0.9, "params": 100, "dense_params": 100}]), *cells]
    for cell, results in cells:
        store.start_cell(cell, run, "cpu")
        store.finish_cell(cell.id, "done", results=results)
    store.end_run(run, "done")
    store.close()
    return out


def _sketch_cells() -> list[tuple[object, list[dict]]]:
    out = []
    for seed in (0, 1):
        cell = fake_cell(
            "small",
            {"width": 8},
            "sketch",
            {"rank": 8},
            seed,
            dataset="digits",
            full={"rank": 8, "layers": "all"},
        )
        rows = [
            {"stage": stage, "accuracy": 0.8 + 0.05 * stage, "params": 50, "dense_params": 100}
            for stage in (1, 2)
        ]
        out.append((cell, rows))
    broken = fake_cell("small", {"width": 8}, "broken", {}, 0, dataset="digits")
    out.append((broken, [{"accuracy": 0.5, "params": 10, "dense_params": 100}]))
    return out


def test_a_third_party_methods_figures_appear_in_the_report(tmp_path: Path) -> None:
    out = _small_suite(tmp_path, _sketch_cells())
    host = report_host(("thirdparty", ThirdParty()))
    host.reporters.get("figures").formats = ("png", "pdf")  # asked for: SVG comes anyway
    build_report(out, host)  # no ReportError
    entries = json.loads((out / "figures" / "figures.json").read_text())
    mine = {e["title"]: e for e in entries if e["method"] == "sketch"}
    assert mine["Sketch: accuracy per stage"]["stem"] == "sketch-stages"
    assert mine["Sketch: accuracy per stage"]["files"] == [
        f"sketch-stages.{ext}" for ext in ("svg", "pdf", "png")
    ]
    for ext in ("svg", "pdf", "png"):
        assert (out / "figures" / f"sketch-stages.{ext}").stat().st_size > 1000
    assert mine["Sketch: ranks"]["skipped"] == "no rank sweep in this suite"
    html = (out / "index.html").read_text(encoding="utf-8")
    figure = html[html.index('<figure id="fig-sketch-stages"') :]
    figure = figure[: figure.index("</figure>")]
    assert 'class="fig-method method-sketch"' in figure and "<svg" in figure
    assert "<b>Sketch: accuracy per stage.</b> Sketched layers recover accuracy" in figure
    assert "<b>Sketch: ranks</b>: no rank sweep in this suite." in html
    # its point keys name its operating points in the tables
    data = load_report_data(out, report_host(("thirdparty", ThirdParty())))
    (table,) = comparison_tables(operating_points(data))
    assert [(r["method"], r["setting"]) for r in table.rows] == [
        ("dense", ""),
        ("sketch", "stage=1"),
        ("sketch", "stage=2"),
        ("broken", ""),
    ]
    assert "All sketch rows use rank=8." in table.notes


def test_a_method_whose_figures_raise_is_a_reported_failure(tmp_path: Path) -> None:
    out = _small_suite(tmp_path, _sketch_cells())
    build_report(out, report_host(("thirdparty", ThirdParty())))  # the report does not fail
    entries = json.loads((out / "figures" / "figures.json").read_text())
    (failed,) = [e for e in entries if e["method"] == "broken"]
    assert failed["title"] == "broken figures"
    assert failed["skipped"] == "failed: RuntimeError: no ink for broken figures"
    assert "in figures" in failed["error"] and failed["stem"] == ""
    html = (out / "index.html").read_text(encoding="utf-8")
    assert (
        '<li class="bad"><b>broken figures</b>: failed: RuntimeError: no ink for broken figures.'
        in html
    )
    assert 'id="fig-sketch-stages"' in html  # the other methods' figures are still there


def test_figure_names_must_be_unique_in_the_report(tmp_path: Path) -> None:
    class Copycat(Method):
        name = "copycat"

        def figures(self, data, colors):
            return [ReportFigure("pareto-digits-parameters", "Copy", "", figure=Figure())]

    cell = fake_cell("small", {"width": 8}, "copycat", {}, 0, dataset="digits")
    out = _small_suite(tmp_path, [(cell, [{"accuracy": 0.8, "params": 5}])])
    data = load_report_data(out)
    data.methods["copycat"] = Copycat()
    entries = render_figures(data, tmp_path / "figures")
    (copy,) = [e for e in entries if e.method == "copycat"]
    assert copy.skipped == (
        "failed: ValueError: another figure of this report is already named "
        "'pareto-digits-parameters'"
    )
    assert any(e.stem == "pareto-digits-parameters" and e.kind == "pareto" for e in entries)


def test_results_of_a_method_no_longer_installed_still_render(tmp_path: Path) -> None:
    out = write_synthetic_results(tmp_path)
    build_report(out, report_host(methods=False))
    entries = json.loads((out / "figures" / "figures.json").read_text())
    assert {e["kind"] for e in entries} == {"pareto", "curves"}  # no method's own figures
    csv = pd.read_csv(out / "comparison.csv")
    lottery = csv[csv["method"] == "lottery"]["setting"].tolist()
    # without the lottery's point keys its levels are told apart by position
    assert lottery == ["result 0", "result 1", "result 2"]
    assert "pcn keep=f0.25 matches dense accuracy" in (out / "index.html").read_text()


def test_settings_come_from_structured_columns_not_the_label(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    run = store.begin_run("odd", "odd.yaml", "0" * 64, "name: odd\n", ["pcnbench"], {})
    for keep, acc, count in (("f0.5", 0.9, 50), ("f0.1", 0.89, 10)):
        setting = {"keep": keep, "layers": "conv1,fc · head", "note": "a, b=c"}
        cell = fake_cell(
            "odd",
            {"width": 8, "act": "relu · gelu"},
            "pcn",
            setting,
            0,
            dataset="digits",
            model_name="mlp",
            full={**setting, "at_epoch": 1, "calibration": 1000},
            label="digits · mlp · with · dots · and, commas · everywhere · seed 0",
        )
        store.start_cell(cell, run, "cpu")
        store.finish_cell(cell.id, "done", results=[{"accuracy": acc, "params": count}])
    store.close()
    data = load_report_data(tmp_path, report_host())
    row = data.results.iloc[0]
    assert row["method_setting"] == {"keep": "f0.5", "layers": "conv1,fc · head", "note": "a, b=c"}
    assert row["method_params"]["calibration"] == 1000  # the full parameters, as a dict
    assert row["model_setting"] == {"width": 8, "act": "relu · gelu"}
    (group,) = operating_points(data)
    assert group.title == "digits · mlp(width=8,act=relu · gelu)"
    assert [p.setting for p in group.points] == ["keep=f0.5", "keep=f0.1"]
    (table,) = comparison_tables([group])
    assert "All pcn rows use layers=conv1,fc · head, note=a, b=c." in table.notes
    # a results frame without setting columns falls back to the full parameters
    frame = data.results.drop(columns=["method_setting", "model_setting", "dataset_setting"])
    (group,) = model_groups(frame)
    assert group.points[0].setting == "keep=f0.5"
    assert group.title == "digits · mlp(act=relu · gelu,width=8)"  # stored sorted
    (table,) = comparison_tables([group])
    shared = "at_epoch=1, calibration=1000, layers=conv1,fc · head, note=a, b=c"
    assert f"All pcn rows use {shared}." in table.notes


def test_the_store_keeps_the_settings_and_adds_their_columns_to_old_databases(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "results.db")
    run = store.begin_run("old", "old.yaml", "0" * 64, "name: old\n", ["pcnbench"], {})
    cell = fake_cell("old", {"width": 8}, "pcn", {"keep": "f0.5"}, 0, full={"keep": "f0.5", "x": 1})
    store.start_cell(cell, run, "cpu")
    store.finish_cell(cell.id, "done", results=[{"accuracy": 0.9}])
    stored = store.db.execute("SELECT method_setting, model_setting FROM cells").fetchone()
    assert json.loads(stored["method_setting"]) == {"keep": "f0.5"}
    assert json.loads(stored["model_setting"]) == {"width": 8}
    with store.db:  # a database from before settings were stored
        for column in SETTING_COLUMNS:
            store.db.execute(f"ALTER TABLE cells DROP COLUMN {column}")
    store.close()
    data = load_report_data(tmp_path)  # opening adds the columns back, empty
    assert data.results.iloc[0]["method_setting"] == {"keep": "f0.5", "x": 1}
    assert data.cells.iloc[0]["method_setting"] == {"keep": "f0.5", "x": 1}


def test_report_formats_flag_adds_pdf_and_png_and_refuses_others(
    report_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from pcnbench.cli import main

    target = tmp_path / "r"
    assert main(["report", str(report_dir), "--output", str(target), "--formats", "pdf,png"]) == 0
    names = [p.name for p in (target / "figures").iterdir()]
    stems = {n.rsplit(".", 1)[0] for n in names if n.endswith(".svg")}
    assert stems and all(f"{s}.pdf" in names and f"{s}.png" in names for s in stems)
    with pytest.raises(SystemExit) as stop:
        main(["report", str(report_dir), "--formats", "svg,jpg"])
    assert stop.value.code == 2
    assert "--formats: expected some of svg, pdf, png" in capsys.readouterr().err
