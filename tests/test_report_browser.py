"""The HTML report in a real browser: headless Chromium renders every figure, logs no errors.

Runs where Debian's `chromium` and `chromium-driver` packages and the `selenium` Python package
are installed; skips with the reason otherwise. Set PCNBENCH_SCREENSHOT_DIR to keep the
full-page screenshot it takes.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pcnbench.report import build_report

from .reportdata import CLAIMS_TEXT, SUITE_TEXT, report_host, write_synthetic_results
from .test_claims import write_quickstart_results

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium)"
    ),
    pytest.mark.skipif(
        CHROMEDRIVER is None,
        reason="chromedriver not installed (Debian: apt-get install chromium-driver)",
    ),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """Headless Chromium, offline-minded, with a fresh profile."""
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="the selenium package is not installed"
    )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_renders_every_figure_in_chromium(browser, tmp_path: Path) -> None:
    out = write_synthetic_results(tmp_path / "report", SUITE_TEXT + CLAIMS_TEXT)
    build_report(out, report_host())
    manifest = json.loads((out / "figures" / "figures.json").read_text())
    drawn = [e for e in manifest if e["stem"]]
    assert drawn, "the synthetic suite should draw figures"

    browser.get((out / "index.html").as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    sizes = browser.execute_script(
        "return Array.from(document.querySelectorAll('figure')).map(f => {"
        "  const s = f.querySelector('svg'); if (!s) return [f.id, 0, 0, 0];"
        "  const r = s.getBoundingClientRect();"
        "  return [f.id, r.width, r.height, s.querySelectorAll('path, text, use').length]; })"
    )
    assert [s[0] for s in sizes] == [f"fig-{e['stem']}" for e in drawn]
    for fig_id, width, height, marks in sizes:
        assert width > 100 and height > 100, f"{fig_id} rendered at {width}×{height}"
        assert marks > 10, f"{fig_id} has nothing drawn in it"

    # the page opens with the claims table: one visible row per claim, each with its verdict
    claims = browser.execute_script(
        "const s = document.querySelector('section#claims');"
        "if (!s) return null;"
        "const top = s.getBoundingClientRect().top + window.scrollY;"
        "const first = document.querySelector('section#tables').getBoundingClientRect().top;"
        "return [top < first + window.scrollY, Array.from(s.querySelectorAll("
        "'table.claims span.verdict')).map(v => [v.className, v.offsetWidth > 0])];"
    )
    assert claims is not None, "no claims section"
    before_tables, verdicts = claims
    assert before_tables and len(verdicts) >= 2
    assert all(visible and "verdict" in css for css, visible in verdicts)

    errors = [e for e in browser.get_log("browser") if e["level"] in {"SEVERE", "ERROR"}]
    assert errors == []

    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 50, 16000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 50_000
    keep = os.environ.get("PCNBENCH_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "report.png")


def test_long_operating_points_stay_inside_their_column(browser, tmp_path: Path) -> None:
    # the quickstart's settings, e.g. pcn(at_epoch=3,keep=f0.0625,layers={"fc": null},...),
    # have almost no spaces to wrap at
    out = write_quickstart_results(tmp_path / "report", "supported")
    build_report(out, report_host())
    browser.get((out / "index.html").as_uri())
    cells = browser.execute_script(
        "return Array.from(document.querySelectorAll('table.claims td.numbers')).map(n => {"
        "  const p = n.previousElementSibling;"  # the operating point's cell
        "  return [p.textContent, p.scrollWidth, p.clientWidth,"
        "          p.getBoundingClientRect().right, n.getBoundingClientRect().left]; })"
    )
    assert any("layers={" in text for text, *_ in cells), cells
    for text, scroll, client, right, next_left in cells:
        assert scroll <= client and right <= next_left + 0.5, f"{text!r} overflows its cell"
