"""Bounded parsing of suites: aliases, tags, nesting, grid size, names and paths, epochs shown.

Each bad suite ends in one message at file:line:col with advice, exit 2, no traceback, quickly,
and no file is written or changed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pcnbench.cli import main
from pcnbench.errors import SuiteError
from pcnbench.schema import Entry
from pcnbench.suite import load_suite, resolve_axis
from pcnbench.yamlsrc import MAX_ALIAS_VALUES, load_text
from tests.conftest import BASE_SUITE
from tests.test_suite_errors import edit, where


def billion_laughs() -> str:
    """The classic alias bomb: nine levels of nine aliases, about 1 KB of YAML."""
    text = 'lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for n in range(1, 9):
        text += f"lol{n}: &l{n} [" + ", ".join([f"*l{n - 1}"] * 9) + "]\n"
    return text


def cli_error(text: str, write_suite, capsys, *, command: str = "validate") -> tuple[str, Path]:
    """Run `pcnbench <command>` on `text`; assert exit 2, one line, no traceback, no bytes changed.

    Returns the error line and the suite file.
    """
    file = write_suite(text)
    before = file.read_bytes()
    folder = sorted(p.name for p in file.parent.iterdir())
    start = time.perf_counter()
    args = [command, str(file)] + (["--quiet", "--no-report"] if command == "run" else [])
    code = main(args)
    took = time.perf_counter() - start
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.count("\n") == 1, captured.err
    assert file.read_bytes() == before
    assert sorted(p.name for p in file.parent.iterdir()) == folder  # nothing written beside it
    assert took < 10, f"took {took:.1f} s"
    return captured.err.strip(), file


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder, so that a default output (reports/<name>) would show up there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- aliases, tags, nesting -------------------------------------------------------------------


def test_alias_bomb_is_refused_at_the_alias_without_expanding(write_suite, capsys, in_tmp):
    text = billion_laughs() + BASE_SUITE
    err, file = cli_error(text, write_suite, capsys)
    assert err.startswith(f"{file}:")
    assert "through aliases; write the values out or use fewer aliases" in err
    assert f"more than {MAX_ALIAS_VALUES:,} values" in err
    assert not (in_tmp / "reports").exists()


def test_alias_bomb_inside_a_grid_is_refused_and_run_writes_nothing(write_suite, capsys, in_tmp):
    bomb = billion_laughs().replace("\n", "\n    ").replace("lol", "x")  # nested under params
    text = edit("{width: 8, depth: 1}", "\n      " + bomb.replace("\n    ", "\n      ").rstrip())
    text = text.replace("x8: &l8", "width: &l8")
    err, file = cli_error(text, write_suite, capsys, command="run")
    assert err.startswith(f"{file}:") and "models[0].params.x" in err and "alias '*l" in err
    assert not (in_tmp / "reports").exists()


def test_recursive_alias_is_refused(write_suite, capsys):
    text = BASE_SUITE + "description: &d [1, *d]\n"
    err, file = cli_error(text, write_suite, capsys)
    line, column = where(text, "*d]")
    assert err == (
        f"{file}:{line}:{column}: description[1]: alias '*d' refers to a value that contains it "
        "(a suite cannot be recursive)"
    )


def test_a_few_aliases_still_work(host, write_suite):
    text = edit("params: {n_train: 64, n_test: 32}", "params: &p {n_train: 64, n_test: 32}")
    text = text.replace("seeds: [0]", "seeds: [0]\ndescription: x")
    loaded = load_suite(write_suite(text + "exclude: []\n"), host)
    assert len(loaded.cells) == 1
    shared = "x: &w [8, 16]\ny: [*w, *w, *w]\n"
    assert load_text(shared).data == {"x": [8, 16], "y": [[8, 16]] * 3}


@pytest.mark.parametrize(
    ("old", "new", "needle", "shown"),
    [
        ("seeds: [0]", "seeds: !foo [0]", "!foo", "!foo"),
        ("seeds: [0]", "seeds: !!python/tuple [0]", "!!python", "!!python/tuple"),
        ("epochs: 2", "epochs: !!int 2", "!!int", "!!int"),
        (
            "- name: mlp",
            "- name: !!python/name:os.system mlp",
            "!!python",
            "!!python/name:os.system",
        ),
    ],
    ids=["local_tag", "python_tuple", "standard_tag", "python_name"],
)
def test_explicit_yaml_tags_are_refused_at_the_tag(write_suite, capsys, old, new, needle, shown):
    text = edit(old, new)
    err, file = cli_error(text, write_suite, capsys)
    line, column = where(text, needle)
    assert err == (
        f"{file}:{line}:{column}: YAML tag '{shown}' is not allowed in a suite (remove it: a suite "
        "holds plain mappings, lists, strings and numbers)"
    )


def test_deep_nesting_is_refused_without_recursion_error(write_suite, capsys):
    text = BASE_SUITE + "description: " + "[" * 50_000 + "]" * 50_000 + "\n"
    err, file = cli_error(text, write_suite, capsys)
    assert err.startswith(f"{file}:{where(text, 'description')[0]}:")
    assert err.endswith("lists and mappings are nested more than 64 deep")


@pytest.mark.parametrize(
    ("old", "new", "needle", "path", "expect"),
    [
        (
            "epochs: 2",
            "epochs: " + "1" * 5000,
            "1111",
            "recipe.epochs",
            f"cannot read the value '{'1' * 20}…'; check for a typo",
        ),
        (
            "batch_size: 16",
            "batch_size: " + "9" * 300,
            "9999",
            "recipe.batch_size",
            f"integer {'9' * 20}… does not fit in 64 bits; check for a typo",
        ),
        (
            "{width: 8, depth: 1}",
            "{<<: {width: 8}, depth: 1}",
            "<<",
            "models[0].params",
            "YAML merge keys (<<) are not supported; write the keys out",
        ),
    ],
    ids=["int_too_long_to_read", "int_beyond_64_bits", "merge_key"],
)
def test_values_python_cannot_hold_are_refused(write_suite, capsys, old, new, needle, path, expect):
    text = edit(old, new)
    err, file = cli_error(text, write_suite, capsys)
    line, column = where(text, needle)
    assert err == f"{file}:{line}:{column}: {path}: {expect}"


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        (
            BASE_SUITE.encode().replace(b"name: t", b"name: t\x00"),
            "character U+0000 is not allowed",
        ),
        (BASE_SUITE.encode().replace(b"name: t", b"name: t\xff"), "not valid UTF-8 (byte 0xff)"),
    ],
    ids=["nul_character", "not_utf8"],
)
def test_unreadable_text_is_located(tmp_path, capsys, raw, expect):
    file = tmp_path / "suite.yaml"
    file.write_bytes(raw)
    assert main(["validate", str(file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{file}:1:8: ") and expect in err and "Traceback" not in err
    assert file.read_bytes() == raw


def test_a_folder_or_a_huge_file_is_not_read(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"{tmp_path}: is a folder, not a suite file (pass the suite's YAML file)"
    big = tmp_path / "big.yaml"
    big.write_bytes(BASE_SUITE.encode() + b"#" * (5 * 1024 * 1024) + b"\n")
    assert main(["validate", str(big)]) == 2
    assert "larger than 4 MiB" in capsys.readouterr().err


# --- grid size --------------------------------------------------------------------------------

# 1 dataset × 10 widths × (100 sparsities × 100 fine-tuning lengths) × 10 seeds = 10^6 cells,
# written in a few short lists


def grid_suite(points: int) -> str:
    """BASE_SUITE with 10 widths, 10 seeds and a magnitude grid of `points` × `points`."""
    sparsities = ", ".join(str(round(0.5 * (i + 1) / points, 4)) for i in range(points))
    finetune = ", ".join(map(str, range(points)))
    params = f"{{sparsity: [{sparsities}], finetune_epochs: [{finetune}]}}"
    method = f"  - name: magnitude\n    params: {params}"
    text = edit("{width: 8, depth: 1}", "{width: [8, 9, 10, 11, 12, 13, 14, 15, 16, 17], depth: 1}")
    return text.replace("  - dense", method).replace("seeds: [0]", "seeds: 10")


HUGE = grid_suite(100)


def test_a_million_cells_are_refused_before_any_grid_is_expanded(write_suite, capsys, in_tmp):
    start = time.perf_counter()
    err, file = cli_error(HUGE, write_suite, capsys, command="run")
    assert time.perf_counter() - start < 5
    assert err == (
        f"{file}:1:1: the suite expands to 1,000,000 cells (datasets 1 × models 10 × methods "
        "10,000 × seeds 10, before exclude rules), more than max_cells 100,000; the largest grid "
        "is methods[0] ('magnitude', 10,000 points: sparsity 100 × finetune_epochs 100). "
        "Shorten the lists, or set max_cells: 1000000 in the suite if you mean it"
    )
    assert not (in_tmp / "reports").exists()


def test_max_cells_lowers_and_raises_the_limit(host, write_suite, capsys):
    grid = edit("{width: 8, depth: 1}", "{width: [8, 16], depth: 1}").replace(
        "seeds: [0]", "seeds: 2"
    )
    err, file = cli_error(grid + "max_cells: 3\n", write_suite, capsys)
    line, column = where(grid + "max_cells: 3\n", "max_cells")
    assert err.startswith(f"{file}:{line}:{column}: max_cells: the suite expands to 4 cells")
    assert len(load_suite(write_suite(grid + "max_cells: 4\n"), host).cells) == 4


def test_one_entry_grid_beyond_the_limit_is_refused_by_resolve_axis(host, write_suite):
    loaded = load_suite(write_suite(BASE_SUITE), host)
    entry = Entry(name="early", params={"keep": [0.5, 0.75, 1.0], "at_epoch": [1, 2]})
    with pytest.raises(SuiteError) as info:
        resolve_axis("methods", [entry], host.methods, loaded.source, loaded.suite.recipe, limit=5)
    assert info.value.message == (
        "this entry's grid has 6 points (keep 3 × at_epoch 2), more than max_cells 5; "
        "shorten the lists"
    )


def test_ten_thousand_cells_validate_quickly(host, write_suite):
    text = grid_suite(10)
    file = write_suite(text)
    start = time.perf_counter()
    loaded = load_suite(file, host)
    took = time.perf_counter() - start
    assert len(loaded.cells) == 10_000
    assert took < 10, f"validating 10,000 cells took {took:.1f} s"


# --- names and paths --------------------------------------------------------------------------


def test_a_name_too_long_for_a_folder_is_refused(write_suite, capsys, in_tmp):
    text = edit("name: t", "name: " + "n" * 5000)
    err, file = cli_error(text, write_suite, capsys, command="run")
    assert err == (f"{file}:1:7: name: must have at most 100 characters (got '{'n' * 59}…)")
    assert not (in_tmp / "reports").exists()


def test_an_output_folder_name_too_long_is_refused(write_suite, capsys, in_tmp):
    text = BASE_SUITE + "output: out/" + "o" * 300 + "/x\n"
    err, file = cli_error(text, write_suite, capsys, command="run")
    line, column = where(text, "out/")
    assert err == (
        f"{file}:{line}:{column}: output: each folder name in the path must be at most 255 bytes "
        f"(got one of 300 bytes: '{'o' * 20}…')"
    )
    assert not (in_tmp / "out").exists()


def test_seed_count_is_bounded(write_suite, capsys):
    err, file = cli_error(edit("seeds: [0]", "seeds: 1000000000000"), write_suite, capsys)
    assert err == f"{file}:2:8: seeds: a seed count must be ≤ 10,000 (got 1,000,000,000,000)"


# --- epochs shown -----------------------------------------------------------------------------


def test_validate_and_dry_run_show_the_epochs_the_plan_trains(write_suite, tmp_path, capsys):
    text = edit("epochs: 2", "epochs: 1000000000").replace("seeds: [0]", "seeds: 3")
    file = write_suite(text)
    assert main(["validate", str(file)]) == 0
    out = capsys.readouterr().out
    assert "3 cells, 3,000,000,000 epochs planned" in out
    assert "dense seed 2  1,000,000,000 ep" in out
    assert main(["run", str(file), "--dry-run", "--output", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "3 to run, 0 already done" in out
    assert out.rstrip().endswith("3,000,000,000 epochs planned (before trunk sharing)")


def test_exclude_rules_are_bounded(write_suite, capsys):
    text = BASE_SUITE + "exclude:\n" + "  - {seed: 0, method: x}\n" * 1001
    err, file = cli_error(text, write_suite, capsys)
    assert err.startswith(f"{file}:16:3: exclude: must have at most 1000 items, not 1001 (got [")
