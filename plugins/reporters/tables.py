"""Comparison tables per (dataset, model), and their CSV, Markdown and LaTeX (booktabs) exports."""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._atomic import write_atomic, write_text_atomic
from .points import BASELINE, ModelGroup, Point, dataset_references, operating_points
from .stats import Estimate, best_indices, same

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pcnbench.api import Reference, ReportData

__all__ = [
    "COLUMNS",
    "LEGEND",
    "Column",
    "ComparisonTable",
    "ReferenceTable",
    "comparison_frame",
    "comparison_table",
    "comparison_tables",
    "fmt_count",
    "fmt_estimate",
    "fmt_si",
    "fmt_times",
    "measured_speedup",
    "reference_frame",
    "reference_tables",
    "to_latex",
    "to_markdown",
    "write_exports",
    "write_tables",
]

MINUS = "\u2212"
NOISY_MARK = " (noisy)"  # after a measured speedup whose paired ratio is too noisy to compare


@dataclass(frozen=True)
class Column:
    """A table column: its key, header (plain and LaTeX), and which direction is better."""

    key: str
    header: str
    tex: str
    better: str | None = None  # "min", "max" or None (not ranked)
    align: str = "r"


COLUMNS = [
    Column("method", "Method", "Method", align="l"),
    Column("setting", "Setting", "Setting", align="l"),
    Column("n", "Seeds", "$n$"),
    Column("params", "Params", "Params", "min"),
    Column("compression", "Compression", "Compr.", "max"),
    Column("coverage", "Reduced (% of params)", r"Red.\ (\%)"),
    Column("macs", "MACs", "MACs", "min"),
    Column("speedup", "Speedup (MACs)", "Speedup (MACs)", "max"),
    Column("accuracy", "Test acc. (%)", r"Acc.\ (\%)", "max"),
    Column("delta", "Δ acc. vs dense (pp)", r"$\Delta$ acc.\ (pp)", "max"),
    Column("train_time_s", "Train time (s)", "Time (s)", "min"),
    Column("energy_j", "Train energy (J)", "Energy (J)", "min"),
    Column("latency_ms", "Latency (ms)", "Latency (ms)", "min"),
    Column("measured_speedup", "Measured speedup", r"Meas.\ speedup", "max"),
    Column("epochs", "Epochs", "Epochs", "min"),
]


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def fmt_count(x: float) -> str:
    """An exact count with thousands separators, e.g. 272,474 (— for NaN)."""
    return f"{round(x):,}" if _finite(x) else "—"


def fmt_si(x: float) -> str:
    """Three significant digits with a k/M/G/T suffix, e.g. 40.8M (— for NaN)."""
    if not _finite(x):
        return "—"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:#.3g}".rstrip(".") + suffix
    return f"{x:#.3g}".rstrip(".")


def fmt_times(x: float) -> str:
    """A ratio as 7.9× (two decimals under 2×, so 1.05× is not shown as 1.1×)."""
    if not _finite(x):
        return "—"
    return f"{x:.2f}×" if x < 1.995 else f"{x:.1f}×"


def fmt_number(x: float, digits: int = 3) -> str:
    """`digits` significant digits, no exponent below a million (— for NaN)."""
    if not _finite(x):
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def fmt_estimate(
    est: Estimate | None, scale: float = 100.0, signed: bool = False, minus: str = MINUS
) -> str:
    """`mean ± half-width` in scaled units (percent by default); just the mean when n = 1."""
    if est is None:
        return "—"
    mean = est.mean * scale
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    text = text.replace("-", minus)
    if est.half_width is not None:
        text += f" ± {est.half_width * scale:.2f}"
    return text


@dataclass
class ComparisonTable:
    """One (dataset, model)'s table: numeric rows, best marks and footnotes."""

    group: ModelGroup
    rows: list[dict[str, Any]]
    best: dict[str, set[int]]
    notes: list[str] = field(default_factory=list)
    energy_shared: bool = False  # one energy label for every row (then it is a note)

    @property
    def title(self) -> str:
        """`dataset · model`."""
        return self.group.title

    @property
    def columns(self) -> list[Column]:
        """The columns shown: all, but the share reduced only where some row records one."""
        if any(_finite(r["coverage"]) for r in self.rows):
            return COLUMNS
        return [c for c in COLUMNS if c.key != "coverage"]

    def text(self, key: str, i: int, tex: bool = False) -> str:
        """The formatted cell of column `key` in row `i` (LaTeX when `tex`)."""
        row = self.rows[i]
        value = row[key]
        if key in {"method", "setting"}:
            return _tex_escape(value) if tex else value
        if key == "n":
            text = str(value)
        elif key == "params":
            text = fmt_count(value)
        elif key == "macs":
            text = fmt_si(value)
        elif key in {"compression", "speedup"}:
            text = fmt_times(value)
        elif key == "measured_speedup":
            text = fmt_times(value)
            if _finite(value) and row["latency_noisy"]:
                text += NOISY_MARK
        elif key == "accuracy":
            text = fmt_estimate(value)
        elif key == "delta":
            text = "ref." if row["method"] == BASELINE else fmt_estimate(value, signed=True)
        elif key == "energy_j" and not _finite(value):
            text = "—" if self.energy_shared or tex else str(row["energy_label"])
        elif key == "energy_j":
            text = fmt_si(value)
        elif key == "epochs":
            text = fmt_number(value, 4)
        elif key == "coverage":  # share of the model's parameters in tensors the method reduced
            text = f"{100 * value:.1f}" if _finite(value) else "—"
        else:
            text = fmt_number(value)
        return _tex_number(text) if tex else text


def _value_for_best(row: dict[str, Any], key: str) -> float | None:
    value = row[key]
    if isinstance(value, Estimate):
        return value.mean
    if key == "delta" and row["method"] == BASELINE:
        return None
    if key == "measured_speedup" and (row["method"] == BASELINE or row["latency_noisy"]):
        return None  # dense against itself is the noise floor; a noisy ratio ranks nothing
    return value if isinstance(value, (int, float)) else None


def measured_speedup(point: Point) -> tuple[float, bool]:
    """Measured speedup over dense (1 / the paired latency ratio, geometric mean over seeds;
    NaN where not measured) and whether any seed's ratio was flagged noisy."""
    ratios = [r for r in point.values("latency_ratio") if math.isfinite(r) and r > 0]
    if not ratios:
        return math.nan, False
    ratio = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    flags = point.values("latency_noisy")
    return 1.0 / ratio, bool(any(f > 0 for f in flags if math.isfinite(f)))


def _row(group: ModelGroup, point: Point) -> dict[str, Any]:
    energy, energy_label = point.energy()
    params = point.mean("params")
    macs = point.mean("macs")
    dense_params = point.mean("dense_params")
    dense_macs = point.mean("dense_macs")
    inference = point.rows.get("inference_method")
    measured, noisy = measured_speedup(point)
    return {
        "method": point.method,
        "setting": point.setting,
        "n": len(point.rows),
        "seeds": point.seeds,
        "params": params,
        "compression": dense_params / params if params else math.nan,
        "coverage": point.mean("coverage"),
        "left_dense": _left_dense(point),
        "macs": macs,
        "speedup": dense_macs / macs if macs else math.nan,
        "accuracy": point.accuracy(),
        "delta": group.delta(point),
        "train_time_s": point.mean("train_time_s"),
        "energy_j": energy,
        "energy_label": energy_label,
        "latency_ms": point.mean("latency_ms"),
        "dense_latency_ms": point.mean("dense_latency_ms"),
        "measured_speedup": measured,
        "latency_noisy": noisy,
        "latency_label": "; ".join(dict.fromkeys(str(v) for v in inference.dropna()))
        if inference is not None
        else "",
        "epochs": point.mean("epochs_trained"),
    }


def comparison_table(group: ModelGroup) -> ComparisonTable:
    """The numeric rows of one (dataset, model)'s table, with best values and notes."""
    rows = [_row(group, p) for p in group.points]
    best = {}
    for col in COLUMNS:
        if col.better:
            values = [_value_for_best(r, col.key) for r in rows]
            best[col.key] = best_indices(values, col.better == "max")
    labels = {r["energy_label"] for r in rows}
    table = ComparisonTable(group, rows, best, energy_shared=len(labels) == 1)
    for method, items in group.shared.items():
        table.notes.append(f"All {method} rows use {', '.join(items)}.")
    if table.energy_shared and rows:
        table.notes.append(f"Training energy: {rows[0]['energy_label']}.")
    reasons = list(dict.fromkeys(r for p in group.points for r in p.energy_reasons()))
    unmetered = [r for r in reasons if "unmetered" in r]
    if unmetered:
        table.notes.append(f"Energy meters: {' | '.join(unmetered)}.")
    masked = list(dict.fromkeys(p.method for p in group.points if _is_masked(p)))
    if masked:
        table.notes.append(
            f"Masked models ({', '.join(masked)}): params count nonzero weights and MACs scale "
            "with density (theoretical); masks do not make dense hardware faster, as the "
            "measured latency shows."
        )
    covered = [r for r in rows if _finite(r["coverage"])]
    if covered:
        table.notes.append(
            "Reduced: the share of the model's parameters in tensors the method reduced; the "
            "rest stayed dense (biases and normalization by convention)."
        )
    for r in covered:
        if r["left_dense"]:
            label = r["method"] + (f" {r['setting']}" if r["setting"] else "")
            table.notes.append(f"{label} also left dense: {r['left_dense']}.")
    latency_missing = [r for r in rows if not _finite(r["latency_ms"])]
    if latency_missing:
        why = sorted({r["latency_label"] for r in latency_missing if r["latency_label"]})
        table.notes.append("Latency not measured" + (f" ({'; '.join(why)})" if why else "") + ".")
    noisy = [r["method"] + (f" {r['setting']}" if r["setting"] else "") for r in rows]
    noisy = [label for label, r in zip(noisy, rows, strict=True) if r["latency_noisy"]]
    if noisy:
        table.notes.append(
            f"Measured speedup{NOISY_MARK}: too noisy to compare for {', '.join(noisy)} (the 95% "
            "interval of a paired latency ratio reaches more than 10% beyond it; a busy machine?)."
        )
    dense = group.dense
    if dense is None:
        table.notes.append("No dense result for this model yet: Δ accuracy is not available.")
    else:
        dense_seeds = set(dense.seeds)
        unpaired = [
            r["method"] + (f" {r['setting']}" if r["setting"] else "")
            for r in rows
            if r["method"] != BASELINE and not dense_seeds & set(r["seeds"])
        ]
        if unpaired:
            table.notes.append(f"No dense run with the same seeds for: {', '.join(unpaired)}.")
    return table


def _left_dense(point: Point, limit: int = 3) -> str:
    """The largest tensors a point left dense beyond convention and the suite's patterns."""
    from pcnbench.api import Reason

    routine = {*Reason.CONVENTIONAL, Reason.PATTERN}
    column = point.rows.get("left_dense")
    if column is None:
        return ""
    for value in column.dropna():
        rows = json.loads(value) if isinstance(value, str) else value
        odd = [r for r in rows if r.get("reason") not in routine]
        if odd:
            named = "; ".join(
                f"{r['tensor']} ({r['params']:,} params): {r['reason']}" for r in odd[:limit]
            )
            return named + (f"; … {len(odd) - limit} more" if len(odd) > limit else "")
    return ""


def _is_masked(point: Point) -> bool:
    """Whether the point's models are masked: their density is a mask's, not params / dense."""
    density = point.values("density")
    ratio = point.values("params") / point.values("dense_params")
    pairs = zip(density, ratio, strict=True)
    return any(not same(d, r) for d, r in pairs if math.isfinite(d) and math.isfinite(r))


def comparison_tables(groups: list[ModelGroup]) -> list[ComparisonTable]:
    """One table per (dataset, model) group."""
    return [comparison_table(g) for g in groups]


def comparison_frame(tables: list[ComparisonTable]) -> pd.DataFrame:
    """Every table's rows as numbers, one row per operating point (the CSV export)."""
    out = []
    for table in tables:
        for row in table.rows:
            acc, delta = row["accuracy"], row["delta"]
            out.append(
                {
                    "dataset": table.group.dataset,
                    "model": table.group.model,
                    "method": row["method"],
                    "setting": row["setting"],
                    "n_seeds": row["n"],
                    "seeds": " ".join(str(s) for s in row["seeds"]),
                    "params": row["params"],
                    "compression": row["compression"],
                    "coverage": row["coverage"],
                    "macs": row["macs"],
                    "speedup": row["speedup"],
                    "accuracy_pct": acc.mean * 100 if acc else math.nan,
                    "accuracy_ci95_pct": acc.half_width * 100
                    if acc and acc.half_width is not None
                    else math.nan,
                    "delta_acc_pp": delta.mean * 100 if delta else math.nan,
                    "delta_ci95_pp": delta.half_width * 100
                    if delta and delta.half_width is not None
                    else math.nan,
                    "delta_n_pairs": delta.n if delta else 0,
                    "train_time_s": row["train_time_s"],
                    "train_energy_j": row["energy_j"],
                    "energy_label": row["energy_label"],
                    "latency_ms": row["latency_ms"],
                    "dense_latency_ms": row["dense_latency_ms"],
                    "measured_speedup": row["measured_speedup"],
                    "latency_noisy": row["latency_noisy"],
                    "epochs_trained": row["epochs"],
                }
            )
    return pd.DataFrame(out)


@dataclass(frozen=True)
class ReferenceTable:
    """One dataset's published results (`references:`), listed apart from its operating points.

    They are the figures a source reports, not runs of this benchmark: never ranked, never
    marked best, never compared by Δ.
    """

    dataset: str  # as the comparison tables name it, e.g. "cifar10(root=data)"
    references: tuple[Reference, ...]

    @property
    def title(self) -> str:
        """`dataset · published references`."""
        return f"{self.dataset} · published references"

    def rows(self) -> list[dict[str, str]]:
        """Each reference as display text: label, model, accuracy (%), params, MACs, source."""
        return [
            {
                "label": r.label,
                "model": r.model or "—",
                "accuracy": f"{r.accuracy * 100:.2f}",
                "params": fmt_count(math.nan if r.params is None else r.params),
                "macs": fmt_si(math.nan if r.macs is None else r.macs),
                "source": r.source,
            }
            for r in self.references
        ]


REFERENCE_COLUMNS = (
    ("label", "Reference", "Reference"),
    ("model", "Model", "Model"),
    ("accuracy", "Test acc. (%)", r"Acc.\ (\%)"),
    ("params", "Params", "Params"),
    ("macs", "MACs", "MACs"),
    ("source", "Source", "Source"),
)
REFERENCE_NOTE = (
    "Published figures the suite lists beside its results, as their sources report them; "
    "not runs of this benchmark, so never ranked or marked best."
)


def reference_tables(groups: Sequence[ModelGroup]) -> list[ReferenceTable]:
    """One table per dataset that has references, in the order the datasets appear."""
    return [ReferenceTable(d, refs) for d, refs in dataset_references(groups).items() if refs]


def reference_frame(tables: Sequence[ReferenceTable]) -> pd.DataFrame:
    """Every reference as numbers (references.csv)."""
    return pd.DataFrame(
        [
            {
                "dataset": t.dataset,
                "label": r.label,
                "model": r.model or "",
                "accuracy_pct": r.accuracy * 100,
                "params": r.params,
                "macs": r.macs,
                "source": r.source,
            }
            for t in tables
            for r in t.references
        ]
    )


def _reference_markdown(tables: Sequence[ReferenceTable]) -> list[str]:
    lines: list[str] = []
    for table in tables:
        lines += [f"## {_md_escape(table.title)}", ""]
        lines.append("| " + " | ".join(h for _, h, _ in REFERENCE_COLUMNS) + " |")
        lines.append(
            "|"
            + "|".join(
                "--:" if k in {"accuracy", "params", "macs"} else ":--"
                for k, _, _ in REFERENCE_COLUMNS
            )
            + "|"
        )
        for row in table.rows():
            lines.append(
                "| " + " | ".join(_md_escape(row[k]) for k, _, _ in REFERENCE_COLUMNS) + " |"
            )
        lines += ["", f"*{_md_escape(REFERENCE_NOTE)}*", ""]
    return lines


def _reference_latex(tables: Sequence[ReferenceTable]) -> list[str]:
    parts: list[str] = []
    for table in tables:
        aligns = "".join(
            "r" if k in {"accuracy", "params", "macs"} else "l" for k, _, _ in REFERENCE_COLUMNS
        )
        parts += [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            f"\\caption{{{_tex_escape(table.title)}: {_tex_escape(REFERENCE_NOTE)}}}",
            f"\\label{{{_tex_label(table.title)}}}",
            r"\begin{tabular}{" + aligns + "}",
            r"\toprule",
            " & ".join(t for _, _, t in REFERENCE_COLUMNS) + r" \\",
            r"\midrule",
        ]
        for row in table.rows():
            cells = [
                _tex_number(row[k]) if k in {"accuracy", "params", "macs"} else _tex_escape(row[k])
                for k, _, _ in REFERENCE_COLUMNS
            ]
            parts.append(" & ".join(cells) + r" \\")
        parts += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return parts


LEGEND = (
    "Accuracy: mean ± 95% CI over seeds (Student t; n = 1: no interval). Δ: paired by seed "
    "against dense, percentage points. Compression = dense params / params; speedup = dense "
    "MACs / MACs (theoretical); measured speedup = 1 / latency ratio: batch-1 forwards timed "
    "alternately with dense in the same window, median over ABBA blocks (geometric mean over "
    "seeds; dense: against a copy of itself, the noise floor). Bold: best in column."
)


def _md_escape(text: str) -> str:
    """Text from the results as Markdown: HTML in it shown, not run (`<b>` → `&lt;b&gt;`)."""
    return html.escape(str(text), quote=False).replace("|", r"\|")


def to_markdown(tables: list[ComparisonTable], references: Sequence[ReferenceTable] = ()) -> str:
    """GitHub-flavoured Markdown: one section and pipe table per (dataset, model).

    Names, settings, labels and notes come from the suite and the plugins: escaped, so HTML in
    them is shown as text, as in the HTML report.
    """
    lines = [LEGEND, ""]
    for table in tables:
        lines += [f"## {_md_escape(table.title)}", ""]
        shown = table.columns
        lines.append("| " + " | ".join(c.header for c in shown) + " |")
        lines.append("|" + "|".join(":--" if c.align == "l" else "--:" for c in shown) + "|")
        for i in range(len(table.rows)):
            cells = []
            for col in shown:
                text = table.text(col.key, i)
                energy = table.rows[i]["energy_j"]
                if col.key == "energy_j" and not table.energy_shared and _finite(energy):
                    text += f" ({table.rows[i]['energy_label']})"
                text = _md_escape(text)
                if i in table.best.get(col.key, ()):
                    text = f"**{text}**"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"*{_md_escape(note)}*" for note in table.notes]
        lines.append("")
    lines += _reference_markdown(references)
    return "\n".join(lines).rstrip() + "\n"


_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    # Not special to LaTeX, but the default OT1 font encoding prints them as ¡, ¿ and —.
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}


def _tex_escape(text: str) -> str:
    out = "".join(_TEX_SPECIAL.get(ch, ch) for ch in str(text))
    return out.replace("·", r"$\cdot$").replace("×", r"$\times$").replace("Δ", r"$\Delta$")


def _tex_number(text: str) -> str:
    """A formatted number cell in LaTeX: math minus, ±, × and an em dash for missing."""
    for plain, latex in (("—", "---"), (MINUS, "$-$"), (" ± ", r" $\pm$ "), ("×", r"$\times$")):
        text = text.replace(plain, latex)
    return text


def _tex_label(text: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    return "tab:" + "-".join(part for part in slug.split("-") if part)


def to_latex(tables: list[ComparisonTable], references: Sequence[ReferenceTable] = ()) -> str:
    """LaTeX tables (booktabs; `\\usepackage{booktabs}`), one per (dataset, model).

    Columns empty in every row of a table (e.g. energy when unmetered) are left out and named
    in the caption.
    """
    parts = [
        "% Generated by pcnbench. Needs \\usepackage{booktabs}; for a one-column layout wrap a",
        "% tabular in \\resizebox{\\linewidth}{!}{...} (graphicx) or drop columns.",
        "",
    ]
    for table in tables:
        cols = []
        dropped = []
        for col in table.columns:
            if col.key in {"energy_j", "latency_ms", "measured_speedup"} and not any(
                _finite(r[col.key]) for r in table.rows
            ):
                name = "latency" if col.key == "measured_speedup" else col.header.split(" (")[0]
                dropped.append(name.lower())
                continue
            cols.append(col)
        caption = (
            f"{_tex_escape(table.title)}: test accuracy as mean $\\pm$ 95\\% CI over seeds "
            "(Student $t$), $\\Delta$ paired by seed against dense in percentage points; "
            "compression and speedup relative to dense (theoretical MACs); measured speedup: "
            "paired latency ratio against dense. Bold: best in column."
        )
        if dropped:
            caption += f" Not measured: {', '.join(dict.fromkeys(dropped))}."
        notes = [n for n in table.notes if not n.startswith(("Energy meters", "Latency not"))]
        caption += "".join(f" {_tex_escape(n)}" for n in notes)
        parts += [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            f"\\caption{{{caption}}}",
            f"\\label{{{_tex_label(table.title)}}}",
            r"\begin{tabular}{" + "".join(c.align for c in cols) + "}",
            r"\toprule",
            " & ".join(c.tex for c in cols) + r" \\",
            r"\midrule",
        ]
        for i in range(len(table.rows)):
            cells = []
            for col in cols:
                text = table.text(col.key, i, tex=True)
                if i in table.best.get(col.key, ()):
                    text = f"\\textbf{{{text}}}"
                cells.append(text)
            parts.append(" & ".join(cells) + r" \\")
            if i == 0 and table.rows[0]["method"] == BASELINE and len(table.rows) > 1:
                parts.append(r"\midrule")
        parts += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    parts += _reference_latex(references)
    return "\n".join(parts)


def write_exports(
    tables: list[ComparisonTable], out_dir: Path, references: Sequence[ReferenceTable] = ()
) -> list[Path]:
    """Write comparison.csv, comparison.md and comparison.tex under `out_dir` (the published
    references in their own tables at the end, and in references.csv where there are any)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv, md, tex = (out_dir / f"comparison.{ext}" for ext in ("csv", "md", "tex"))
    frame = comparison_frame(tables)
    write_atomic(csv, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6g"))
    write_text_atomic(md, to_markdown(tables, references))
    write_text_atomic(tex, to_latex(tables, references))
    written = [csv, md, tex]
    if references:
        refs_csv = out_dir / "references.csv"
        refs = reference_frame(references)
        write_atomic(refs_csv, lambda tmp: refs.to_csv(tmp, index=False, float_format="%.6g"))
        written.append(refs_csv)
    return written


def write_tables(data: ReportData, out_dir: Path) -> list[Path]:
    """The comparison tables of `data` as CSV, Markdown and LaTeX under `out_dir`."""
    groups = operating_points(data)
    return write_exports(comparison_tables(groups), out_dir, reference_tables(groups))
