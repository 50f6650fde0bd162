"""What `pcnbench` prints in a terminal: tables that fit 80 columns with every row told apart,
a plain line per cell where there is no terminal, and why cells failed, grouped."""

from __future__ import annotations

import re

import pytest
from rich.cells import cell_len

from pcnbench.api import Method, Params
from pcnbench.cli import loading, main
from pcnbench.cli.tables import print_summary
from pcnbench.cli.terminal import rich_console
from pcnbench.hookspecs import hookimpl
from pcnbench.labels import (
    CellParts,
    Column,
    cell_parts,
    error_groups,
    error_reason,
    fit_columns,
    short_labels,
)
from pcnbench.manager import load_plugins
from pcnbench.store import Store
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE
from tests.reportdata import TRACEBACK, write_synthetic_results


def _table_rows(text: str) -> list[str]:
    """The rows of the first table in `text`: the lines between its header rule and the first
    line that is not a row (rows start at the left edge, as the header does)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"}) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip() or re.match(r"^\d+ cells? ", line):
            break
        rows.append(line.rstrip())
    return rows


def _header(text: str) -> list[str]:
    """The column names of the first table in `text` (the line above its rule)."""
    lines = text.splitlines()
    return lines[next(i for i, line in enumerate(lines) if set(line.strip()) == {"─"}) - 1].split()


def _fits(text: str, width: int) -> None:
    too_wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert not too_wide, too_wide


@pytest.fixture
def synthetic(tmp_path):
    """A results database like a suite's: several methods, IMP levels, a failed cell."""
    return write_synthetic_results(tmp_path / "synth")


def test_run_summary_fits_80_columns_and_tells_every_row_apart(synthetic, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    store = Store(synthetic / "results.db", readonly=True)
    frame = store.results_frame()
    store.close()
    print_summary(frame, set(frame["cell_id"]), rich_console(wide=True), {"lottery": ("level",)})
    text = capsys.readouterr().out
    _fits(text, 80)
    rows = _table_rows(text)
    assert len(rows) == len(frame) and len(set(rows)) == len(rows)  # no two rows read the same
    lottery = [r.split()[3:5] for r in rows if "lottery" in r]  # seed, level
    assert sorted(lottery) == [[s, level] for s in "012" for level in "123"]
    assert all(r.startswith(("depth=20 · ", "depth=56 · ")) for r in rows)  # what varies
    assert "cifar10" not in text and "resnet" not in text  # what does not
    monkeypatch.setenv("COLUMNS", "120")  # wider: the epochs too, whole ones as integers
    print_summary(frame, set(frame["cell_id"]), rich_console(wide=True), {"lottery": ("level",)})
    wide = capsys.readouterr().out
    assert _header(wide)[-1] == "epochs"
    assert _table_rows(wide)[0].endswith(" 20") and "20.0" not in wide


def _in_runs_and_ascending(rows: list[tuple[str, tuple[int, ...]]]) -> None:
    """Each configuration's rows come in one run, its (seed, level) ascending within it."""
    order = list(dict.fromkeys(label for label, _ in rows))
    runs = [label for i, (label, _) in enumerate(rows) if i == 0 or rows[i - 1][0] != label]
    assert runs == order, runs
    for label in order:
        points = [point for name, point in rows if name == label]
        assert points == sorted(points), (label, points)


def test_tables_list_each_configurations_seeds_together_in_order(synthetic, capsys):
    # the store holds the cells in the order they ran: seed 0 of every method, then seed 1...
    store = Store(synthetic / "results.db", readonly=True)
    frame = store.results_frame()
    store.close()
    assert frame["seed"].tolist() != sorted(frame["seed"].tolist())
    print_summary(frame, set(frame["cell_id"]), rich_console(wide=True), {"lottery": ("level",)})
    rows = []
    for row in _table_rows(capsys.readouterr().out):
        label, seed, *rest = re.split(r"\s{2,}", row.strip())
        rows.append((label, (int(seed), int(rest[0]) if "lottery" in label else 0)))
    _in_runs_and_ascending(rows)
    assert main(["results", str(synthetic), "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        row = dict(zip(header, (v.strip() for v in line.strip("|").split("|")), strict=True))
        level = int(float(row["level"])) if row["level"] not in ("", "nan", "None") else 0
        label = f"{row['model_params']} {row['method']} {row['method_params']}"
        rows.append((label, (int(row["seed"]), level)))
    _in_runs_and_ascending(rows)


def test_results_table_fits_80_columns_with_a_short_error_and_shows_more_when_wider(
    synthetic, monkeypatch, capsys
):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["results", str(synthetic)]) == 0
    narrow = capsys.readouterr().out
    _fits(narrow, 80)
    rows = _table_rows(narrow)
    assert len(set(rows)) == len(rows) == 29
    header = _header(narrow)
    assert header[:3] == ["cell", "seed", "level"] and header[-1] == "error"
    failed = next(r for r in rows if "lowrank" in r and r.split()[3] == "0")
    assert "rank 0 leaves" in failed  # the traceback's last line, cut to fit
    # the reasons, grouped, a count each, in full below the table
    assert "  1 × RuntimeError: rank 0 leaves nothing to train" in narrow
    assert "  1 × running, no error recorded" in narrow

    monkeypatch.setenv("COLUMNS", "200")
    assert main(["results", str(synthetic)]) == 0
    wide = capsys.readouterr().out
    header = _header(wide)
    assert {"id", "MACs", "status", "epochs", "error"} <= set(header)
    assert "RuntimeError: rank 0 leaves nothing to train" in _table_rows(wide)[21]


def test_a_run_off_a_terminal_prints_a_line_per_cell_started_and_finished(
    write_suite, tmp_path, capsys
):
    suite = write_suite(BASE_SUITE.replace("seeds: [0]", "seeds: [0, 1]"))
    argv = ["run", str(suite), "--output", str(tmp_path / "out"), "--no-report", "--no-meter"]
    assert main(argv) == 0  # pytest's captured stdout is not a terminal
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[1/2] start  dense seed 0"
    assert re.fullmatch(r"\[1/2\] done   dense seed 0  acc \d+\.\d\d%  \d+\.\d s", lines[1])
    assert lines[2] == "[2/2] start  dense seed 1"
    assert re.fullmatch(r"\[2/2\] done   dense seed 1  acc \d+\.\d\d%  \d+\.\d s", lines[3])


class FailParams(Params):
    """Parameters of the test-only `fail` method."""

    why: str = "nothing"


class Fail(Method):
    """Test-only method that fails before training, saying `why`."""

    name = "fail"
    Params = FailParams

    def run(self, session, params: FailParams) -> None:
        """Fail at once."""
        raise RuntimeError(params.why)


class FailPlugin:
    """Registers `fail`."""

    @hookimpl
    def register_methods(self, register) -> None:
        """Register the failing method."""
        register(Fail())


def test_a_run_whose_cells_fail_ends_with_each_reason_and_its_count(
    write_suite, tmp_path, monkeypatch, capsys
):
    host = load_plugins(extra=[("test-fail", FailPlugin())])
    monkeypatch.setattr(loading, "plugins", lambda: host)
    text = BASE_SUITE.replace("seeds: [0]", "seeds: [0, 1, 2]").replace(
        "  - dense", "  - name: fail\n    params: {why: [disk on fire, out of cheese]}"
    )
    out = tmp_path / "out"
    argv = ["run", str(write_suite(text)), "--output", str(out), "--no-report", "--quiet"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    assert "6 cells failed, by reason:" in printed
    assert "  3 × RuntimeError: disk on fire" in printed
    assert "  3 × RuntimeError: out of cheese" in printed
    assert printed.count("Traceback") == 0
    assert main(["results", str(out)]) == 0
    table = capsys.readouterr().out
    assert _header(table)[-1] == "error" and "disk on fire" in table
    # off a terminal, each failed cell's own line says why (the failed cells are retried)
    assert main(argv[:-1]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if "] failed" in line]
    assert len(lines) == 6 and all(
        line.endswith(("disk on fire", "out of cheese")) for line in lines
    )


def test_short_labels_keep_what_varies_and_stay_distinct(host):
    loaded = load_suite("suites/quickstart.yaml", host)
    from pcnbench.labels import cell_parts

    labels = short_labels([cell_parts(c) for c in loaded.cells])
    assert len(set(labels.values())) == len(loaded.cells) == 16
    assert labels[loaded.cells[0].id] == "dense seed 0"
    assert "pcn keep=f0.0625 seed 0" in labels.values()
    assert "lottery seed 1" in labels.values()
    assert max(map(len, labels.values())) <= 30
    # cells that differ only where labels do not look (another suite) still get apart
    same = [CellParts("a" * 16, method="dense", suite="s1"), CellParts("b" * 16, method="dense")]
    assert len(set(short_labels(same).values())) == 2


def test_error_reasons_take_a_tracebacks_last_line_and_a_messages_first():
    assert error_reason(TRACEBACK) == "RuntimeError: rank 0 leaves nothing to train"
    assert error_reason("no room left\nsecond line") == "no room left"
    assert error_reason(None, "running") == "running, no error recorded"
    assert error_groups([TRACEBACK, "x", TRACEBACK]) == [
        ("RuntimeError: rank 0 leaves nothing to train", 2),
        ("x", 1),
    ]


def test_narrow_tables_shorten_headers_then_drop_by_rank_and_wrap_keys_last():
    cols = [
        Column("cell", ["a long cell label"], key=True),
        Column("figure", ["1"], short_header="f"),
        Column("extra", ["x" * 10], drop=0),
        Column("note", ["n" * 30], min_width=10),
    ]
    assert [c.header for c in fit_columns(cols, 200)] == ["cell", "figure", "extra", "note"]
    fitted = fit_columns(cols, 40)
    assert [(c.header, c.width) for c in fitted] == [("cell", 17), ("f", 1), ("note", 18)]
    tiny = fit_columns(cols, 30)
    assert tiny[0].overflow == "fold" and sum(c.width for c in tiny) + 4 <= 30


def test_the_plan_of_a_large_suite_fits_80_columns_and_keeps_every_label_whole(monkeypatch, capsys):
    from pathlib import Path

    suite = str(Path(__file__).parents[1] / "suites" / "cifar10.yaml")
    host = load_plugins()
    cells = load_suite(suite, host).cells
    labels = short_labels([cell_parts(c) for c in cells])
    monkeypatch.delenv("COLUMNS", raising=False)  # a pipe: a line per cell, ids whole
    assert main(["validate", suite]) == 0
    piped = capsys.readouterr().out
    for cell in cells:
        assert f"{cell.id}  {labels[cell.id]}  " in piped
    assert max(cell_len(line) for line in piped.splitlines()) > 80  # the case to fit

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["validate", suite]) == 0
    narrow = capsys.readouterr().out
    _fits(narrow, 80)
    assert narrow.startswith("suite 'cifar10' (")
    joined = " ".join(narrow.split())  # wrapped lines read back as one text
    for cell in cells:
        assert f"{cell.id[:8]} {' '.join(labels[cell.id].split())} " in joined, cell.label
    assert "(magnitude.finetune_epochs)" in narrow and "(pcn.at_epoch 5)" in narrow


def test_a_dry_run_fits_80_columns_with_a_long_output_path(
    write_suite, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("COLUMNS", "80")
    suite = write_suite(
        BASE_SUITE.replace("- dense", "- {name: lowrank, params: {at_epoch: 1, rank: r0.5}}")
    )
    out = tmp_path / ("a-rather-long-folder-name-for-results" * 2)
    assert main(["run", str(suite), "--dry-run", "--project", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    _fits(text.replace(str(out), "OUT"), 80)  # a path is never broken, whatever its length
    joined = " ".join(text.split())
    assert f"1 to run, 0 already done → {out}; 2 epochs planned (before trunk sharing)" in joined
    assert "s per epoch (" in joined and "measured over" in joined
