"""Output folders: foreign folders, files, unmakeable paths and other suites are refused cleanly."""

from __future__ import annotations

import os
import pathlib

import pytest

from pcnbench.cli import main
from pcnbench.lock import OutputLock, OutputLockedError
from pcnbench.runner import Runner
from pcnbench.suite import load_suite
from tests.conftest import BASE_SUITE

ADVICE = "pick an empty or new folder"


def run_cli(*args: str) -> int:
    """main() with --quiet progress and no report."""
    return main(["run", *args, "--quiet", "--no-report"])


def snapshot(folder: pathlib.Path) -> dict[str, bytes]:
    """Every file under `folder` (relative name → bytes)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def refused(capsys, code: int) -> str:
    """The one error line of a refused run (exit 2, no traceback)."""
    assert code == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return captured.err


@pytest.mark.parametrize("via", ["--output", "suite"])
def test_a_non_empty_foreign_folder_is_refused_before_anything_is_written(
    write_suite, tmp_path, capsys, via
):
    foreign = tmp_path / "etc"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "passwd").write_text("root:x:0:0\n")
    (foreign / "sub" / "conf").write_bytes(b"\x00keep\n")
    before = snapshot(foreign)
    if via == "suite":
        code = run_cli(str(write_suite(BASE_SUITE + f"output: {foreign}\n")))
    else:
        code = run_cli(str(write_suite(BASE_SUITE)), "--output", str(foreign))
    err = refused(capsys, code)
    assert f"output folder {foreign} is not empty and holds no pcnbench results" in err
    assert ADVICE in err
    assert snapshot(foreign) == before
    assert sorted(p.name for p in foreign.iterdir()) == ["passwd", "sub"]  # no lock, no db


def test_an_empty_folder_and_a_new_one_are_accepted_and_the_lock_file_is_removed(
    write_suite, tmp_path
):
    suite = str(write_suite(BASE_SUITE))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli(suite, "--output", str(empty)) == 0
    assert run_cli(suite, "--output", str(tmp_path / "new" / "deeper")) == 0
    for out in (empty, tmp_path / "new" / "deeper"):
        assert (out / "results.db").is_file()
        assert not (out / ".pcnbench.lock").exists()
    assert run_cli(suite, "--output", str(empty)) == 0  # its own folder: accepted again


def test_an_output_that_is_a_file_is_refused_naming_it(write_suite, tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_bytes(b"precious\n")
    err = refused(capsys, run_cli(str(write_suite(BASE_SUITE)), "--output", str(target)))
    assert f"output {target} is a file, not a folder" in err and ADVICE in err
    assert target.read_bytes() == b"precious\n"


def test_an_output_under_a_file_is_refused_naming_the_file(write_suite, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"x")
    out = blocker / "a" / "b"
    err = refused(capsys, run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)))
    assert f"output folder {out} cannot be created: {blocker} is a file" in err
    assert blocker.read_bytes() == b"x"


def test_an_output_whose_parent_cannot_be_created_is_a_clean_error(
    write_suite, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "locked" / "out"

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", denied)
    err = refused(capsys, run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)))
    assert f"output folder {out} cannot be created (Permission denied" in err
    assert "pick a folder you can write" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_output_in_a_read_only_folder_is_a_clean_error(write_suite, tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        out = parent / "out"
        err = refused(capsys, run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)))
        assert f"output folder {out} cannot be created (Permission denied" in err
    finally:
        parent.chmod(0o700)


def test_another_suites_folder_is_refused_naming_both_unless_mixing_is_asked_for(
    write_suite, tmp_path, capsys
):
    out = tmp_path / "out"
    assert run_cli(str(write_suite(BASE_SUITE)), "--output", str(out)) == 0
    capsys.readouterr()
    before = snapshot(out)
    other = str(write_suite(BASE_SUITE.replace("name: t", "name: other"), "other.yaml"))
    err = refused(capsys, run_cli(other, "--output", str(out)))
    assert f"output folder {out} holds results of suite 't', not of suite 'other'" in err
    assert ADVICE in err and "--mix-suites" in err
    assert snapshot(out) == before
    assert run_cli(other, "--output", str(out), "--mix-suites") == 0
    assert not (out / ".pcnbench.lock").exists()


def test_an_unreadable_database_is_left_to_the_store(write_suite, tmp_path, capsys):
    from pcnbench.output import check_output, suites_in

    out = tmp_path / "out"
    out.mkdir()
    (out / "results.db").write_bytes(b"not a database at all")
    assert suites_in(out / "results.db") is None
    check_output(out, "t")  # not refused here: the store reports the damage
    assert (out / "results.db").read_bytes() == b"not a database at all"


def test_the_lock_file_is_removed_after_failure_and_ctrl_c(
    host_with_boom, write_suite, tmp_path, monkeypatch
):
    text = BASE_SUITE.replace("  - dense", "  - name: boom\n    params: {when: interrupt}")
    loaded = load_suite(write_suite(text), host_with_boom)
    out = tmp_path / "out"
    assert Runner(loaded, host_with_boom, output=out).run().interrupted
    assert not (out / ".pcnbench.lock").exists()

    def broken(*args, **kwargs):
        raise RuntimeError("store broke")

    monkeypatch.setattr("pcnbench.runner.Store.begin_run", broken)
    with pytest.raises(RuntimeError, match="store broke"):
        Runner(loaded, host_with_boom, output=out).run(force=True)
    assert not (out / ".pcnbench.lock").exists()


def test_a_held_lock_refuses_and_its_release_lets_the_next_one_take_a_fresh_file(tmp_path):
    first, second = OutputLock(tmp_path / "out"), OutputLock(tmp_path / "out")
    first.acquire()
    with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
        second.acquire()
    stale = os.open(first.path, os.O_RDWR)  # a run that opened the file just before release
    first.release()
    assert not first.path.exists()
    with second:
        assert first.path.read_text() == str(os.getpid())
        # the stale descriptor may lock the removed file, but that is not the lock at the path
        assert not OutputLock(tmp_path / "out")._is_current(stale)
        with pytest.raises(OutputLockedError):
            OutputLock(tmp_path / "out").acquire()
    os.close(stale)
    assert not first.path.exists()


def test_an_output_name_too_long_for_the_file_system_is_one_clear_error(
    write_suite, tmp_path, capsys
) -> None:
    out = tmp_path / ("x" * 300)
    assert main(["run", str(write_suite(BASE_SUITE)), "--output", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot be used (File name too long)" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["suite.yaml"]


def test_an_os_error_no_check_foresaw_is_one_line_naming_the_file(monkeypatch, capsys) -> None:
    import errno

    from pcnbench.cli.commands import env

    def refuse(args: object) -> int:
        raise OSError(errno.EIO, "Input/output error", "/mnt/disk/results.db")

    monkeypatch.setattr(env, "cmd_env", refuse)
    assert main(["env"]) == 2
    err = capsys.readouterr().err
    assert err == "error: Input/output error (/mnt/disk/results.db)\n"
