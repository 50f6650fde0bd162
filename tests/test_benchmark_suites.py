"""The suites the benchmarks derive from the shipped ones stay valid as those change."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pcnbench.suite import load_suite

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _common():
    spec = importlib.util.spec_from_file_location("bench_common", BENCHMARKS / "_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_short_quickstart_validates_and_keeps_every_method(host, tmp_path):
    common = _common()
    loaded = load_suite(common.short_quickstart(tmp_path / "short.yaml"), host)
    full = load_suite(common.ROOT / "suites" / "quickstart.yaml", host)
    assert {c.method.name for c in loaded.cells} == {c.method.name for c in full.cells}
    assert len(loaded.cells) < len(full.cells)
