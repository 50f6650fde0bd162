"""The self-contained HTML report: summary, tables, inline SVG figures, failures, provenance."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import yaml
from markupsafe import Markup

from ._atomic import write_text_atomic
from .points import BASELINE, operating_points
from .summary import TOLERANCE_PP, finding, headline, sharing_sentence
from .tables import (
    LEGEND,
    NOISY_MARK,
    REFERENCE_COLUMNS,
    REFERENCE_NOTE,
    ComparisonTable,
    comparison_tables,
    reference_tables,
)
from .template import TEMPLATE

if TYPE_CHECKING:
    from pcnbench.api import ReportData

__all__ = ["inline_svg", "render_html", "write_html"]

_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def inline_svg(text: str, prefix: str) -> str:
    """An SVG file's markup ready to inline: no XML prolog, element ids made unique by `prefix`."""
    svg = _PROLOG.sub("", text, count=1).strip()
    svg = _METADATA.sub("", svg, count=1)  # RDF authoring data: bytes a reader never sees
    ids = set(_ID.findall(svg))
    if not ids:
        return svg

    def rename(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"{match.group(1)}{prefix}-{name}" if name in ids else match.group(0)

    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    # References: href="#id", xlink:href="#id" and url(#id).
    svg = re.sub(r'((?:xlink:)?href="#)([^"]+)', rename, svg)
    return re.sub(r"(url\(#)([^)]+)", rename, svg)


def _html_table(table: ComparisonTable) -> dict[str, Any]:
    rows = []
    for i, row in enumerate(table.rows):
        cells = []
        for col in table.columns:
            text = table.text(col.key, i)
            sub = ""
            if col.key == "energy_j" and not table.energy_shared and text != row["energy_label"]:
                sub = row["energy_label"]
            noisy = col.key == "measured_speedup" and text.endswith(NOISY_MARK)
            if noisy:  # the value, muted, with the word under it (the table's note says more)
                text, sub = text.removesuffix(NOISY_MARK), "noisy"
            cells.append(
                {
                    "text": text,
                    "sub": sub,
                    "best": i in table.best.get(col.key, ()),
                    "align": col.align + (" wrap" if col.key == "setting" else ""),
                    "muted": text in {"—", "ref."} or text == row.get("energy_label") or noisy,
                }
            )
        rows.append({"cells": cells, "dense": row["method"] == BASELINE})
    return {
        "title": table.title,
        "headers": [{"text": c.header, "align": c.align} for c in table.columns],
        "rows": rows,
        "notes": table.notes,
    }


def _suite_description(text: str) -> str:
    try:
        loaded = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return ""
    value = loaded.get("description") if isinstance(loaded, dict) else None
    return str(value) if value else ""


def _environment(runs: Any) -> list[tuple[str, str]]:
    if runs.empty:
        return []
    raw = runs.iloc[-1].get("environment")
    try:
        env = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        env = {}
    out = []
    for key, value in env.items():
        if isinstance(value, (list, dict)):
            value = ", ".join(map(str, value)) if isinstance(value, list) else json.dumps(value)
            value = value or "none"
        out.append((key, "—" if value is None else str(value)))
    return out


def _figures(out_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]], bool]:
    manifest = out_dir / "figures" / "figures.json"
    if not manifest.is_file():
        return [], [], False
    entries = json.loads(manifest.read_text(encoding="utf-8"))
    shown, skipped = [], []
    for n, entry in enumerate(entries):
        svg_path = out_dir / "figures" / f"{entry['stem']}.svg" if entry.get("stem") else None
        if svg_path is None or not svg_path.is_file():
            why = entry.get("skipped") or "not drawn"
            skipped.append({"title": entry["title"], "why": why, "error": entry.get("error", "")})
            continue
        svg = inline_svg(svg_path.read_text(encoding="utf-8"), f"f{n}")
        links = [
            {"href": f"figures/{f}", "text": f.rsplit(".", 1)[-1].upper()}
            for f in entry.get("files", [])
            if not f.endswith(".svg")
        ]
        shown.append(
            {
                "id": f"fig-{entry['stem']}",
                "kind": entry["kind"],
                "method": entry.get("method", ""),
                "title": entry["title"],
                "caption": entry.get("caption", ""),
                "svg": Markup(svg),
                "links": links,
            }
        )
    return shown, skipped, True


def _cells_status(data: ReportData) -> dict[str, int]:
    cells = data.cells
    if cells.empty:
        return {}
    return {str(k): int(v) for k, v in cells["status"].value_counts().items()}


def _unfinished(data: ReportData) -> list[dict[str, Any]]:
    """Cells not done, one row per distinct (status, reason): its count, cells and full error.

    A suite whose every cell met the same error (a missing package, say) gives one row, not
    one per cell; the cells are listed under it.
    """
    cells = data.cells
    if cells.empty:
        return []
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for _, cell in cells[cells["status"] != "done"].iterrows():
        error = cell.get("error")
        error = str(error) if isinstance(error, str) else ""
        last = error.strip().splitlines()[-1] if error.strip() else ""
        status = str(cell["status"])
        summary = last or ("still running, or the run stopped" if status == "running" else "")
        group = groups.setdefault(
            (status, summary),
            {"status": status, "summary": summary, "error": error, "cells": [], "errors": set()},
        )
        group["cells"].append(
            {"label": str(cell.get("label") or cell["cell_id"]), "cell_id": str(cell["cell_id"])}
        )
        group["errors"].add(error.strip())
    out = []
    for group in groups.values():
        distinct = len(group.pop("errors"))
        group["count"] = len(group["cells"])
        # the full error of the first cell; others with the same last line may differ above it
        group["error_note"] = (
            f"first of {distinct} different tracebacks ending in this line" if distinct > 1 else ""
        )
        out.append(group)
    return sorted(out, key=lambda g: (-g["count"], g["status"], g["summary"]))


_VERDICT_NOTE = {
    "supported": "the whole 95% interval satisfies every expectation",
    "refuted": "the whole 95% interval violates an expectation",
    "inconclusive": "the interval straddles a bound (or one seed gives none)",
    "not evaluated": "cells missing or failed, or a quantity not recorded",
}


def _claims(data: ReportData) -> list[dict[str, Any]]:
    """The judged claims as the template's rows: verdict, name, and each point's numbers."""
    rows = []
    for claim in getattr(data, "claims", None) or []:
        points = []
        for point in claim.points:
            points.append(
                {
                    "label": point.label,
                    "verdict": point.verdict,
                    "decided": point.label == claim.decided_by and len(claim.points) > 1,
                    "checks": [_check_text(c) for c in point.checks],
                    "cells": len(point.subject_cells) + len(point.baseline_cells),
                }
            )
        rows.append(
            {
                "name": claim.name,
                "verdict": claim.verdict,
                "css": claim.verdict.replace(" ", "-"),
                "note": _VERDICT_NOTE.get(claim.verdict, ""),
                "comparison": (
                    f"{claim.subject} vs {claim.baseline}"
                    + (f" ({claim.source})" if getattr(claim, "source", "") else "")
                    if claim.subject
                    else ""
                ),
                "expect": "; ".join(claim.expect),
                "over": claim.over,
                "reason": claim.reason,
                "points": points,
            }
        )
    return rows


def _signed(x: float, ratio: bool) -> str:
    if not math.isfinite(x):
        return str(x)
    text = f"{x:.3g}" if abs(x) >= 1000 or (x != 0 and abs(x) < 0.01) else f"{x:.2f}"
    return (text if ratio or x <= 0 else "+" + text).replace("-", "−")


def _check_text(check: Any) -> dict[str, str]:
    """One expectation's numbers: `accuracy +0.12 pp [−0.30, +0.54] ≥ −1 pp`."""
    ratio = check.unit == "x"
    unit = "×" if ratio else (f" {check.unit}" if check.unit else "")
    op = {">=": "≥", "<=": "≤"}.get(check.op, check.op)
    interval = (
        f"[{_signed(check.low, ratio)}, {_signed(check.high, ratio)}]"
        if check.n >= 2
        else "(one seed: no interval)"
    )
    how = (
        f"{check.n} seeds vs the published value"
        if getattr(check, "published", False)
        else f"paired over {check.n} seeds"
        if check.paired
        else f"Welch, n = {check.n}"
    )
    return {
        "quantity": check.quantity,
        "text": f"{_signed(check.estimate, ratio)}{unit} {interval}",
        "bound": f"{op} {_signed(check.value, ratio)}{unit}",
        "how": how,
        "verdict": check.verdict,
    }


def render_html(data: ReportData, out_dir: Path) -> str:
    """The report page as one string (figures are read from figures/ if drawn)."""
    groups = operating_points(data)
    tables = comparison_tables(groups)
    status = _cells_status(data)
    total = sum(status.values())
    runs = data.runs
    last = runs.iloc[-1] if not runs.empty else None
    suite_text = str(last["suite_text"]) if last is not None and last["suite_text"] else ""
    figures, skipped, drawn = _figures(out_dir)
    exports = [
        {"href": name, "text": name}
        for name in ("comparison.csv", "comparison.md", "comparison.tex")
        if (out_dir / name).is_file()
    ]
    findings = [{"title": g.title, "text": finding(g).sentence} for g in groups]
    run_rows = []
    for _, run in runs.iterrows():
        argv = run.get("argv")
        try:
            argv = " ".join(json.loads(argv)) if isinstance(argv, str) else ""
        except ValueError:
            argv = str(argv)
        run_rows.append(
            {
                "id": run.get("run_id"),
                "started": run.get("started_at") or "",
                "finished": run.get("finished_at") or "",
                "status": run.get("status") or "",
                "sha": str(run.get("suite_sha256") or "")[:12],
                "argv": argv,
            }
        )
    template = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string(
        TEMPLATE
    )
    return template.render(
        suite=data.suite,
        claims=_claims(data),
        description=_suite_description(suite_text),
        headline=headline(groups, total, status.get("done", 0)),
        sharing=sharing_sentence(data.results),
        tolerance=f"{TOLERANCE_PP:g}",
        findings=findings if len(findings) > 1 else [],
        status=status,
        total=total,
        tables=[_html_table(t) for t in tables],
        references=[
            {
                "title": t.title,
                "rows": [[row[key] for key, _, _ in REFERENCE_COLUMNS] for row in t.rows()],
            }
            for t in reference_tables(groups)
        ],
        reference_headers=[header for _, header, _ in REFERENCE_COLUMNS],
        reference_note=REFERENCE_NOTE,
        legend=LEGEND,
        exports=exports,
        figures=figures,
        skipped=skipped,
        figures_drawn=drawn,
        unfinished=_unfinished(data),
        runs=run_rows,
        environment=_environment(runs),
        suite_file=str(last["suite_file"]) if last is not None else "",
        suite_sha=str(last["suite_sha256"]) if last is not None else "",
        suite_text=suite_text,
        devices=sorted({str(d) for d in data.cells.get("device", []) if isinstance(d, str)}),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_html(data: ReportData, out_dir: Path) -> list[Path]:
    """Write `out_dir`/index.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    write_text_atomic(path, render_html(data, out_dir))
    return [path]
