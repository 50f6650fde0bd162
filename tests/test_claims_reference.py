"""Claims whose baseline is a published figure (`baseline: {reference: LABEL}`): judged by a
one-sample Student-t interval of the subject's per-seed values around the published value."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pcnbench.claims import format_claims
from pcnbench.errors import SuiteError
from pcnbench.report import load_report_data
from pcnbench.stats import t_quantile
from pcnbench.store import Store
from pcnbench.suite import load_suite
from pcnbench_plugins.reporters.html import render_html
from tests.reportdata import _result, fake_cell, report_host

PUBLISHED = 0.94  # the reference's accuracy
SUITE = """\
name: ref
seeds: [0, 1, 2]
datasets: [digits]
models:
  - name: mlp
    params: {width: 64, depth: 1}
methods: [dense, {name: magnitude, params: {sparsity: 0.5}}]
recipe: {epochs: 2}
references:
  - label: CNN (Greydanus & Kobak 2024)
    source: Greydanus & Kobak, ICML 2024, table 1
    dataset: digits
    accuracy: 0.94
    params: 5210
  - label: accuracy only
    source: a blog
    dataset: digits
    accuracy: 0.9
    macs: 1000
claims:
  - name: our dense model reproduces the published accuracy within 2 points
    subject: {method: dense}
    baseline: {reference: CNN (Greydanus & Kobak 2024)}
    expect: {accuracy: ">= -2pp"}
"""


def write(out: Path, accuracies: dict[int, float], *, skip: int | None = None) -> Path:
    """A results database for SUITE: dense at `accuracies` per seed, 4,000 params."""
    store = Store(out / "results.db")
    run = store.begin_run("ref", "ref.yaml", "ab" * 32, SUITE, [], {})
    for seed, acc in accuracies.items():
        if seed == skip:
            continue
        c = fake_cell("ref", {"width": 64, "depth": 1}, "dense", {}, seed, dataset="digits")
        store.start_cell(c, run, "cpu")
        row = _result(4000, 4000, acc, 10.0, seed) | {"dense_params": 4000, "dense_macs": 4000}
        store.finish_cell(c.id, "done", results=[row], epochs=[], phases=[])
    store.end_run(run, "done")
    store.close()
    return out


@pytest.fixture(scope="module")
def host() -> Any:
    return report_host()


def judged(out: Path, host: Any) -> Any:
    (claim,) = load_report_data(out, host).claims
    return claim


@pytest.mark.parametrize(
    ("accuracies", "verdict"),
    [
        ({0: 0.935, 1: 0.940, 2: 0.945}, "supported"),  # −0.5 ± 1.2 pp: above −2
        ({0: 0.900, 1: 0.905, 2: 0.910}, "refuted"),  # −3.5 ± 1.2 pp: below −2
        ({0: 0.880, 1: 0.940, 2: 1.000}, "inconclusive"),  # −0 ± 15 pp: straddles −2
    ],
    ids=["supported", "refuted", "inconclusive"],
)
def test_a_claim_against_a_reference_is_a_one_sample_t_interval(
    tmp_path: Path, host: Any, accuracies: dict[int, float], verdict: str
) -> None:
    claim = judged(write(tmp_path, accuracies), host)
    assert claim.verdict == verdict
    assert claim.baseline == "reference 'CNN (Greydanus & Kobak 2024)'"
    assert claim.source == "Greydanus & Kobak, ICML 2024, table 1"
    (point,) = claim.points
    (check,) = point.checks
    values = [100 * (a - PUBLISHED) for a in accuracies.values()]
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    half = t_quantile(0.975, 2) * std / math.sqrt(3)
    assert (check.estimate, check.low, check.high) == pytest.approx(
        (mean, mean - half, mean + half), abs=1e-9
    )
    assert (check.n, check.paired, check.published) == (3, False, True)
    assert point.baseline_cells == ()


def test_compression_against_a_reference_is_published_params_over_ours(
    tmp_path: Path, host: Any
) -> None:
    text = SUITE.replace('expect: {accuracy: ">= -2pp"}', 'expect: {compression: ">= 1.2x"}')
    out = write(tmp_path, {0: 0.9, 1: 0.9, 2: 0.9})
    data = load_report_data(out, host)
    from pcnbench.claims import judge_claim, read_claims

    ((spec, _, _),) = read_claims(text)
    claim = judge_claim(spec, data)
    (check,) = claim.points[0].checks
    assert check.estimate == pytest.approx(5210 / 4000)  # every seed the same: no spread
    assert claim.verdict == "supported"


def test_a_claim_against_a_reference_without_results_is_not_evaluated(
    tmp_path: Path, host: Any
) -> None:
    out = write(tmp_path, {0: 0.9, 1: 0.9, 2: 0.9}, skip=None)
    text = SUITE.replace("subject: {method: dense}", "subject: {method: magnitude}")
    from pcnbench.claims import judge_claim, read_claims

    ((spec, _, _),) = read_claims(text)
    claim = judge_claim(spec, load_report_data(out, host))
    assert claim.verdict == "not evaluated"
    assert "matches the subject (method=magnitude)" in claim.reason


def test_claims_and_the_report_show_the_reference_and_its_source(tmp_path: Path, host: Any) -> None:
    out = write(tmp_path, {0: 0.935, 1: 0.940, 2: 0.945})
    data = load_report_data(out, host)
    text = format_claims(data.claims)
    assert "method=dense vs reference 'CNN (Greydanus & Kobak 2024)': accuracy" in text
    assert "published in: Greydanus & Kobak, ICML 2024, table 1" in text
    assert "3 seeds vs the published value" in text
    html = render_html(data, tmp_path)
    assert "(Greydanus &amp; Kobak, ICML 2024, table 1)" in html
    assert "3 seeds vs the published value" in html


def where(text: str, needle: str) -> tuple[int, int]:
    at = text.rindex(needle)
    return text.count("\n", 0, at) + 1, at - (text.rfind("\n", 0, at) + 1) + 1


INVALID = [
    (
        "unknown_reference",
        SUITE.replace("{reference: CNN (Greydanus & Kobak 2024)}", "{reference: CNN (Greydanus)}"),
        "CNN (Greydanus)}",
        "the suite lists no reference 'CNN (Greydanus)'; did you mean 'CNN (Greydanus & Kobak "
        "2024)'? (references: 'CNN (Greydanus & Kobak 2024)', 'accuracy only')",
    ),
    (
        "quantity_the_reference_lacks",
        SUITE.replace(
            "{reference: CNN (Greydanus & Kobak 2024)}", "{reference: accuracy only}"
        ).replace('expect: {accuracy: ">= -2pp"}', 'expect: {compression: ">= 2x"}'),
        "compression",
        "the reference 'accuracy only' states no params (add it to the reference): it cannot "
        "be compared on compression",
    ),
    (
        "quantity_no_reference_states",
        SUITE.replace('expect: {accuracy: ">= -2pp"}', 'expect: {train_time_s: "<= 10"}'),
        "train_time_s",
        "states accuracy, params and MACs only: it cannot be compared on train_time_s",
    ),
    (
        "subject_off_the_references_dataset",
        SUITE.replace(
            "    dataset: digits\n    accuracy: 0.94", "    dataset: mnist\n    accuracy: 0.94"
        ),
        "{method: dense}\n    baseline",
        "the subject (method=dense) matches no cell on the reference's dataset 'mnist'",
    ),
    (
        "reference_and_selector_mixed",
        SUITE.replace(
            "{reference: CNN (Greydanus & Kobak 2024)}",
            "{reference: CNN (Greydanus & Kobak 2024), method: dense}",
        ),
        "method: dense}",
        "unknown key 'method'",
    ),
]


@pytest.mark.parametrize(
    ("text", "needle", "message"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_reference_claims_are_errors_at_their_place(
    tmp_path: Path, text: str, needle: str, message: str
) -> None:
    from pcnbench.manager import load_plugins

    with pytest.raises(SuiteError) as caught:
        load_suite(tmp_path / "ref.yaml", load_plugins(), text=text)
    assert message in str(caught.value), str(caught.value)
    assert (caught.value.line, caught.value.column) == where(text, needle), str(caught.value)
