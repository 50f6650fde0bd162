"""Damaged, foreign, read-only and full results databases: one clear error, nothing lost."""

from __future__ import annotations

import errno
import io
import sqlite3
from pathlib import Path

import pytest
import torch

from pcnbench import state
from pcnbench.cli import main
from pcnbench.errors import DiskFullError
from pcnbench.store import _SCHEMA, Store
from tests.conftest import BASE_SUITE

GRID = BASE_SUITE.replace("seeds: [0]", "seeds: [0, 1]")


def run_cli(*args: str) -> int:
    """`pcnbench run` with --quiet progress."""
    return main(["run", *args, "--quiet"])


@pytest.fixture(scope="module")
def done_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder holding the results of a finished two-cell run (no report)."""
    out = tmp_path_factory.mktemp("done") / "out"
    suite = out.parent / "suite.yaml"
    suite.write_text(GRID, encoding="utf-8")
    assert run_cli(str(suite), "--output", str(out), "--no-report") == 0
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative name → bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_clean_error(capsys: pytest.CaptureFixture, *needles: str) -> str:
    """stderr holds one `error:` line naming each of `needles`; no traceback anywhere."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert errors, captured.err
    for needle in needles:
        assert needle in errors[-1], (needle, errors[-1])
    return errors[-1]


def damage(kind: str, db: Path, good: bytes) -> None:
    """Write a damaged database of `kind` to `db`."""
    if kind == "truncated":
        db.write_bytes(good[: len(good) // 2])
    elif kind == "garbage":
        db.write_bytes(bytes(range(256)) * 40)
    else:
        db.write_text("this is a text file, not a database\n" * 50, encoding="utf-8")


@pytest.mark.parametrize("kind", ["truncated", "garbage", "text"])
def test_damaged_database_is_named_left_alone_and_recovery_is_explained(
    kind: str, done_dir: Path, tmp_path: Path, write_suite, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    db = out / "results.db"
    damage(kind, db, (done_dir / "results.db").read_bytes())
    before = snapshot(out)
    for argv in (["results", str(out)], ["results", str(db)], ["report", str(out)]):
        assert main(argv) == 2, argv
        assert_clean_error(capsys, str(db), "damaged", ".recover", "recovered.db")
    assert run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)) == 2
    assert_clean_error(capsys, str(db), "damaged", ".recover")
    assert snapshot(out)[db.name] == before[db.name]


def test_results_of_an_empty_or_foreign_file_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    assert main(["results", str(empty)]) == 2
    assert_clean_error(capsys, str(empty), "empty file")
    assert empty.read_bytes() == b""
    other = tmp_path / "other.db"  # a valid SQLite database of something else
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE notes (text TEXT)")
    con.close()
    before = other.read_bytes()
    assert main(["results", str(other)]) == 2
    assert_clean_error(capsys, str(other), "not a pcnbench results database")
    assert other.read_bytes() == before
    missing = tmp_path / "nowhere"
    assert main(["results", str(missing)]) == 2
    assert_clean_error(capsys, "no results database", "run a suite first")
    assert not missing.exists()


def test_an_older_database_without_newer_columns_is_read_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    db = tmp_path / "results.db"
    with sqlite3.connect(db) as con:
        con.executescript(_SCHEMA)
        for column in ("dataset_setting", "model_setting", "method_setting", "label", "device"):
            con.execute(f"ALTER TABLE cells DROP COLUMN {column}")
        con.execute("DROP TABLE phases")
        con.execute(
            "INSERT INTO cells (cell_id, suite, dataset, model, method, seed, status)"
            " VALUES ('c1', 's', 'synthetic', 'mlp', 'dense', 0, 'done')"
        )
        con.execute("INSERT INTO results (cell_id, idx, params) VALUES ('c1', 0, 123)")
    con.close()
    before = db.read_bytes()
    assert main(["results", str(db), "--format", "csv"]) == 0
    assert "c1" in capsys.readouterr().out
    store = Store.open_existing(db)
    assert store.table("phases").empty and store.results_frame()["params"].tolist() == [123]
    store.close()
    assert db.read_bytes() == before


@pytest.fixture
def read_only_media(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQLite connection opens as on read-only media: any write is refused.

    Tests run as root, where chmod does not stop writes; this refuses them as a read-only
    mount does ("attempt to write a readonly database").
    """
    connect = sqlite3.connect

    def read_only(database, *args, uri=False, **kwargs):
        if not uri:
            database, uri = f"file:{Path(database).resolve()}?mode=ro", True
        elif "mode=ro" not in str(database):
            database = f"{database}{'&' if '?' in str(database) else '?'}mode=ro"
        return connect(database, *args, uri=uri, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", read_only)


def test_results_and_report_work_on_read_only_media(
    done_dir: Path, tmp_path: Path, read_only_media: None, capsys: pytest.CaptureFixture
) -> None:
    before = snapshot(done_dir)
    assert main(["results", str(done_dir), "--format", "json"]) == 0
    assert '"status": "done"' in capsys.readouterr().out
    elsewhere = tmp_path / "report"
    assert main(["report", str(done_dir), "--output", str(elsewhere)]) == 0
    assert f"report: {elsewhere / 'index.html'}" in capsys.readouterr().out
    assert (elsewhere / "index.html").is_file() and (elsewhere / "comparison.csv").is_file()
    assert snapshot(done_dir) == before


def test_run_on_read_only_media_says_so(
    done_dir: Path, write_suite, read_only_media: None, capsys: pytest.CaptureFixture
) -> None:
    db = done_dir / "results.db"
    before = db.read_bytes()
    assert run_cli(str(write_suite(GRID)), "--output", str(done_dir), "--force") == 2
    assert_clean_error(capsys, str(db), "read-only", "--output")
    assert db.read_bytes() == before


def test_disk_full_while_storing_keeps_committed_results(
    write_suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    insert = Store._insert
    stored: list[str] = []

    def insert_until_full(self: Store, table: str, row: dict) -> None:
        if table == "results":
            if stored:  # the second cell's results meet a full disk
                raise sqlite3.OperationalError("database or disk is full")
            stored.append(row["cell_id"])
        insert(self, table, row)

    monkeypatch.setattr(Store, "_insert", insert_until_full)
    assert run_cli(str(write_suite(GRID)), "--output", str(out)) == 2
    assert_clean_error(capsys, "no space left on device while writing", str(out / "results.db"))
    monkeypatch.undo()
    with sqlite3.connect(out / "results.db") as con:
        done = [r[0] for r in con.execute("SELECT cell_id FROM cells WHERE status = 'done'")]
        kept = [r[0] for r in con.execute("SELECT DISTINCT cell_id FROM results")]
    con.close()
    assert done == stored == kept  # the first cell's results are committed and kept


def full_for_report_files(replace):
    """os.replace that meets a full disk renaming a report file's temporary file into place."""

    def full(src, dst) -> None:
        if str(src).endswith(".tmp"):  # the reporters' temporary files, not checkpoints
            raise OSError(errno.ENOSPC, "No space left on device")
        replace(src, dst)

    return full


class _FullDisk(io.RawIOBase):
    """A file whose disk fills after `room` bytes."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return len(data)


def test_a_trunk_save_on_a_full_disk_says_so_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "trunk" / "state.pt"
    path.parent.mkdir()
    path.write_bytes(b"the earlier state")
    payload = {"w": torch.zeros(4096)}
    # torch.save turns the ENOSPC into "RuntimeError: [enforce fail at inline_container.cc]"
    with pytest.raises(DiskFullError, match=f"no space left on device while writing {path}"):
        state.write_atomic(path, lambda f: torch.save(payload, _FullDisk(1000)))
    assert path.read_bytes() == b"the earlier state"
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.pt"]  # no temp file left


def test_a_report_on_a_full_disk_fails_and_keeps_the_old_files(
    done_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from pcnbench_plugins.reporters import _atomic

    target = tmp_path / "report"
    target.mkdir()
    for name in ("comparison.csv", "comparison.md", "index.html"):  # an earlier report's
        (target / name).write_text(f"the earlier {name}\n", encoding="utf-8")
    before = snapshot(target)

    monkeypatch.setattr(_atomic.os, "replace", full_for_report_files(_atomic.os.replace))
    assert main(["report", str(done_dir), "--output", str(target)]) == 2
    message = assert_clean_error(capsys, "no space left on device while writing", str(target))
    assert "incomplete" in message
    after = snapshot(target)
    assert {k: v for k, v in after.items() if k in before} == {
        k: v for k, v in before.items() if k in after
    }  # every file is the whole old one: none half-written
    assert not [name for name in after if name.endswith(".tmp")]


def test_run_whose_report_cannot_be_written_exits_non_zero(
    write_suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from pcnbench_plugins.reporters import _atomic

    monkeypatch.setattr(_atomic.os, "replace", full_for_report_files(_atomic.os.replace))
    out = tmp_path / "out"
    assert run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)) == 2
    assert_clean_error(capsys, "no space left on device while writing", str(out))
    monkeypatch.undo()
    assert main(["results", str(out), "--format", "csv"]) == 0  # the results are kept
    assert ",done," in capsys.readouterr().out


HALT_SUITE = BASE_SUITE.replace("seeds: [0]", "seeds: [0, 1]").replace(
    "  - dense\n", "  - dense\n  - {name: magnitude, params: {sparsity: 0.5, finetune_epochs: 1}}\n"
)


def test_a_full_disk_mid_run_stops_the_run_and_keeps_what_was_done(
    write_suite, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    suite = write_suite(HALT_SUITE)

    def full(*args: object, **kwargs: object) -> None:  # every trunk or checkpoint save
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state.torch, "save", full)
    assert run_cli(str(suite), "--output", str(out), "--jobs", "1") == 2
    message = assert_clean_error(capsys, "no space left on device while writing", str(out))
    assert "run the same command again" in message
    monkeypatch.undo()
    with sqlite3.connect(out / "results.db") as con:
        rows = dict(con.execute("SELECT cell_id, status FROM cells").fetchall())
        errors = [r[0] for r in con.execute("SELECT error FROM cells WHERE error IS NOT NULL")]
    con.close()
    # the cell that met the full disk is retried next run, not failed; no cell started after it
    assert "failed" not in rows.values()
    assert list(rows.values()).count("interrupted") == 1
    assert "no space left on device" in errors[0] and "retries this cell" in errors[0]
    assert len(rows) < 4
    assert run_cli(str(suite), "--output", str(out), "--no-report") == 0  # space freed: it goes on
    with sqlite3.connect(out / "results.db") as con:
        statuses = [r[0] for r in con.execute("SELECT status FROM cells")]
    con.close()
    assert statuses == ["done"] * 4


def test_no_room_even_for_the_temporary_file_is_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state.tempfile, "mkstemp", full)
    path = tmp_path / "state.pt"
    with pytest.raises(DiskFullError, match=f"while writing {path}"):
        state.write_atomic(path, lambda f: f.write(b"x"))
