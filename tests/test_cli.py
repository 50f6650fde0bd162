"""End to end through the CLI and the runner: run, skip, force, only, failures, results."""

from __future__ import annotations

import io
import json
import sqlite3

import pandas as pd
import pytest

from pcnbench.cli import main
from pcnbench.runner import Runner
from pcnbench.store import RESULT_COLUMNS
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE

GRID = BASE_SUITE.replace("{width: 8, depth: 1}", "{width: [8, 16], depth: 1}").replace(
    "seeds: [0]", "seeds: [0, 1]"
)


def finished_at(out) -> dict[str, str]:
    """cell_id → finished_at, to tell retrained cells from skipped ones."""
    with sqlite3.connect(out / "results.db") as db:
        return dict(db.execute("SELECT cell_id, finished_at || run_id FROM cells"))


def run_cli(*args: str) -> int:
    """main() with --quiet progress and no report (the report has tests of its own)."""
    return main(["run", *args, "--quiet", "--no-report"])


def test_run_stores_one_done_row_per_cell_and_prints_summary(write_suite, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(str(write_suite(GRID)), "--output", str(out)) == 0
    text = capsys.readouterr().out
    assert "4 trained, 0 already done, 0 failed" in text
    assert main(["results", str(out), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    for row in rows:
        assert row["status"] == "done" and row["suite"] == "t" and row["dataset"] == "synthetic"
        assert row["method"] == "dense" and json.loads(row["method_params"]) == {}
        assert row["params"] == row["dense_params"] > 0
        assert row["macs"] == row["dense_macs"] > 0
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["epochs_trained"] == 2.0 and row["train_time_s"] > 0
    # width 8, depth 1 MLP on 1×8×8 inputs with 4 classes: 64·8+8 + 8·4+4
    assert {r["params"] for r in rows} == {64 * 8 + 8 + 8 * 4 + 4, 64 * 16 + 16 + 16 * 4 + 4}


def test_second_run_skips_done_cells_and_force_retrains(write_suite, tmp_path, capsys):
    suite, out = str(write_suite(GRID)), tmp_path / "out"
    assert run_cli(suite, "--output", str(out)) == 0
    first = finished_at(out)
    capsys.readouterr()
    assert run_cli(suite, "--output", str(out)) == 0
    assert "0 trained, 4 already done" in capsys.readouterr().out
    assert finished_at(out) == first
    assert run_cli(suite, "--output", str(out), "--force", "--only", "width=16") == 0
    again = finished_at(out)
    changed = {k for k in first if first[k] != again[k]}
    assert len(changed) == 2
    with sqlite3.connect(out / "results.db") as db:
        assert db.execute("SELECT count(*) FROM results").fetchone()[0] == 4


def test_dry_run_and_validate_print_every_cell_without_training(write_suite, tmp_path, capsys):
    suite, out = str(write_suite(GRID)), tmp_path / "out"
    assert main(["validate", suite]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("4 cells, 8 epochs planned")
    assert sum(line.endswith(" 2 ep") for line in lines) == 4  # one line per cell
    assert run_cli(suite, "--output", str(out), "--dry-run") == 0
    text = capsys.readouterr().out
    assert text.count("[run]") == 4 and "4 to run, 0 already done" in text
    assert not (out / "results.db").exists()


def test_failed_cell_is_stored_with_traceback_and_the_rest_still_run(
    host_with_boom, write_suite, tmp_path
):
    text = BASE_SUITE.replace("  - dense", "  - boom\n  - dense")
    loaded = load_suite(write_suite(text), host_with_boom)
    out = tmp_path / "out"
    summary = Runner(loaded, host_with_boom, output=out).run()
    assert len(summary.failed) == 1 and len(summary.done) == 1
    with sqlite3.connect(out / "results.db") as db:
        rows = dict(db.execute("SELECT method, status FROM cells"))
        error = db.execute("SELECT error FROM cells WHERE method = 'boom'").fetchone()[0]
    assert rows == {"boom": "failed", "dense": "done"}
    assert "Traceback" in error and "RuntimeError: boom: deliberate failure" in error
    again = Runner(loaded, host_with_boom, output=out).run()
    assert again.skipped == 1 and len(again.failed) == 1  # failed cells run again


def test_ctrl_c_keeps_finished_cells_and_marks_the_current_one_interrupted(
    host_with_boom, write_suite, tmp_path
):
    text = BASE_SUITE.replace(
        "  - dense", "  - dense\n  - name: boom\n    params: {when: interrupt}"
    )
    loaded = load_suite(write_suite(text), host_with_boom)
    out = tmp_path / "out"
    summary = Runner(loaded, host_with_boom, output=out).run()
    assert summary.interrupted and len(summary.done) == 1
    with sqlite3.connect(out / "results.db") as db:
        assert dict(db.execute("SELECT method, status FROM cells")) == {
            "dense": "done",
            "boom": "interrupted",
        }
        assert db.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    plan = Runner(loaded, host_with_boom, output=out).plan()
    assert [c.method.name for c in plan[1]] == ["boom"]


def test_missing_dataset_stops_the_run_before_any_cell_with_one_message_and_exit_2(
    write_suite, tmp_path, capsys
):
    text = BASE_SUITE.replace(
        "- name: synthetic\n    params: {n_train: 64, n_test: 32}",
        f"- name: mnist\n    params: {{root: {tmp_path / 'nodata'}, download: false}}",
    )
    out = tmp_path / "out"
    assert run_cli(str(write_suite(text)), "--output", str(out)) == 2
    err = capsys.readouterr().err
    assert "datasets[0]: mnist: files not found in" in err and "nodata" in err
    assert "download: true" in err and "Traceback" not in err
    assert not (out / "results.db").exists()  # checked before any cell trained


@pytest.mark.parametrize("fmt", ["csv", "json", "markdown", "table"])
def test_results_formats_carry_the_stable_columns(write_suite, tmp_path, capsys, fmt):
    out = tmp_path / "out"
    assert run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)) == 0
    capsys.readouterr()
    assert main(["results", str(out), "--format", fmt]) == 0
    text = capsys.readouterr().out
    if fmt == "csv":
        assert list(pd.read_csv(io.StringIO(text)).columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    elif fmt == "json":
        assert list(json.loads(text)[0])[: len(RESULT_COLUMNS)] == RESULT_COLUMNS
    elif fmt == "markdown":
        header = text.splitlines()[0]
        assert header.startswith("| " + " | ".join(RESULT_COLUMNS) + " |")
    else:  # the figures under short headers (a status column only when a cell is not done)
        lines = text.splitlines()
        header = lines[next(i for i, ln in enumerate(lines) if ln.startswith("──")) - 1].split()
        assert header[:2] == ["id", "cell"] and {"params", "MACs", "acc"} <= set(header)
        assert "dense" in text and "%" in text


def test_results_on_a_directory_without_database_is_a_clean_error(tmp_path, capsys):
    assert main(["results", str(tmp_path)]) == 2
    assert "no results database" in capsys.readouterr().err


def test_epoch_records_and_phases_are_stored(write_suite, tmp_path):
    out = tmp_path / "out"
    assert run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)) == 0
    with sqlite3.connect(out / "results.db") as db:
        epochs = db.execute("SELECT epoch, train_loss, lr FROM epochs ORDER BY idx").fetchall()
        phases = db.execute("SELECT name, kind, wall_s FROM phases").fetchall()
        env = json.loads(db.execute("SELECT environment FROM runs").fetchone()[0])
    assert [e[0] for e in epochs] == [1, 2]
    assert all(e[1] > 0 and e[2] == pytest.approx(0.1) for e in epochs)
    assert ("train", "train") in {(p[0], p[1]) for p in phases}
    assert env["torch"] and env["pcnbench"] and env["cpu_count"] >= 1


def test_second_run_on_the_same_output_refuses_naming_the_first_pid(write_suite, tmp_path, capsys):
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pcnbench.lock import OutputLock; "
            f"lock = OutputLock({str(out)!r}); lock.acquire(); print('held', flush=True); "
            "time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)) == 2
        err = capsys.readouterr().err
        assert f"another pcnbench run (pid {holder.pid})" in err
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    # a killed holder leaves its lock file behind but not its lock
    assert (out / ".pcnbench.lock").exists()
    assert run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)) == 0


def test_run_builds_the_report_and_report_rebuilds_it(write_suite, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(write_suite(BASE_SUITE)), "--output", str(out), "--quiet"]) == 0
    assert f"report: {out / 'index.html'}" in capsys.readouterr().out
    html = (out / "index.html").read_text()
    assert "<svg" in html and "dense" in html
    (out / "index.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "index.html").is_file()
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_jobs_2_runs_cells_in_worker_processes_with_the_same_results(write_suite, tmp_path):
    suite = str(write_suite(GRID))
    for jobs in (1, 2):
        assert run_cli(suite, "--output", str(tmp_path / f"j{jobs}"), "--jobs", str(jobs)) == 0

    def stored(out):
        with sqlite3.connect(out / "results.db") as db:
            return sorted(db.execute("SELECT cell_id, params, accuracy, step FROM results"))

    one, two = stored(tmp_path / "j1"), stored(tmp_path / "j2")
    assert len(one) == 4 and one == two


# `pcnbench results`: column order and integer columns -----------------------------------------

EXTRA_KEYS = ["zeta", "alpha", "level", "mid_note", "beta_score", "omega", "kappa", "gamma"]


def _results_db(out, keys: list[str], failed_first: bool) -> None:
    """A database with one done cell (extra result `keys` in that order) and one failed cell."""
    from pcnbench.store import Store
    from tests.reportdata import fake_cell

    store = Store(out / "results.db")
    run = store.begin_run("t", "t.yaml", "ab" * 32, "name: t", ["pcnbench"], {})
    done = fake_cell("t", {"width": 8}, "pcn", {"keep": "f0.5"}, 0, dataset="digits")
    failed = fake_cell("t", {"width": 8}, "lowrank", {}, 0, dataset="digits")
    values = {"zeta": 0.5, "alpha": "a", "level": 3, "mid_note": "m", "beta_score": 1.25}
    values |= {"omega": 7, "kappa": None, "gamma": 2.0}
    row = {"params": 474, "dense_params": 948, "macs": 9_000, "dense_macs": 18_000}
    row |= {"accuracy": 0.97, "train_time_s": 1.5, "epochs_trained": 2.0}
    row |= {k: values[k] for k in keys}
    for cell in (failed, done) if failed_first else (done, failed):
        store.start_cell(cell, run, "cpu")
        if cell is done:
            store.finish_cell(cell.id, "done", results=[row])
        else:
            store.finish_cell(cell.id, "failed", error="RuntimeError: boom")
    store.end_run(run, "failed")
    store.close()


def _results_csv(out, hash_seed: int) -> str:
    """`pcnbench results OUT --format csv` in a fresh interpreter with this PYTHONHASHSEED."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    cmd = [sys.executable, "-m", "pcnbench.cli", "results", str(out), "--format", "csv"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def test_results_columns_come_in_a_fixed_documented_order(tmp_path):
    from pcnbench.store import CELL_COLUMNS

    expected = [*RESULT_COLUMNS, *CELL_COLUMNS, *sorted(EXTRA_KEYS)]
    one, two = tmp_path / "one", tmp_path / "two"
    _results_db(one, EXTRA_KEYS, failed_first=False)
    _results_db(two, EXTRA_KEYS[::-1], failed_first=True)
    # String hashing (and so a set's order) changes with PYTHONHASHSEED: the header must not.
    headers = [_results_csv(one, seed).splitlines()[0] for seed in (1, 2, 3)]
    headers.append(_results_csv(two, 4).splitlines()[0])
    assert headers == [",".join(expected)] * 4


def test_integer_columns_stay_integers_next_to_a_failed_cell(tmp_path, capsys):
    _results_db(tmp_path, EXTRA_KEYS, failed_first=False)
    assert main(["results", str(tmp_path), "--format", "csv"]) == 0
    text = capsys.readouterr().out
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    done, failed = frame.iloc[0], frame.iloc[1]
    assert (done["status"], failed["status"]) == ("done", "failed")
    assert (done["params"], done["dense_macs"], done["level"], done["omega"]) == (
        "474",
        "18000",
        "3",
        "7",
    )
    assert (failed["params"], failed["level"], failed["result"]) == ("", "", "")
    assert (done["result"], done["seed"], done["gamma"], done["accuracy"]) == (
        "0",
        "0",
        "2.0",
        "0.97",
    )
    assert main(["results", str(tmp_path), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert (records[0]["params"], records[0]["level"], records[1]["params"]) == (474, 3, None)
    assert main(["results", str(tmp_path), "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [c.strip() for c in lines[0].strip("|").split("|")]
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    failed_cells = [c.strip() for c in lines[3].strip("|").split("|")]
    assert cells[names.index("params")] == "474" and cells[names.index("level")] == "3"
    assert failed_cells[names.index("params")] == "" and failed_cells[names.index("level")] == ""
    assert main(["results", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "474" in table and "474.0" not in table and "boom" in table


def test_no_command_prints_every_command_and_exits_2(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: pcnbench") and "Traceback" not in err
    for command in ("run", "validate", "plugins (info)", "report", "env", "results", "claims"):
        assert f"\n    {command} " in err, command
