"""The report in a real browser: headless Chromium (the Debian package) driven by Playwright.

Builds a small sweep folder with every section's input (tests/report/test_report.py `rich_sweep`: no training),
writes its report, opens the file offline and checks what a reader does: the page loads without console
or page errors, every chart hook holds a drawn SVG, hovering a point shows its tooltip, a legend entry
hides its series, and the samples table filters by text and by selector. A full-page screenshot is
saved to test-artifacts/report.png.

Chromium comes from `apt-get install chromium` (`make test` does it); Playwright's own browser download
is not used. Without Chromium or Playwright the test fails under CI (env CI set) and skips elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from test_report import ALL_PLOTS, rich_sweep

from leaksweep.report.page import write_report

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "test-artifacts" / "report.png"


def _unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why}; CI must run the browser test (`make test` installs chromium with apt-get)")
    pytest.skip(
        f"{why}; install it (`apt-get install -y --no-install-recommends chromium`, "
        "`pip install -e '.[test]'`) to run the browser test"
    )


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    executable = shutil.which("chromium")
    if executable is None:
        _unavailable("no `chromium` on PATH")
    with sync_playwright() as p:
        # --no-sandbox: the tests may run as root (CI containers), where Chromium's sandbox refuses to start
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


def _visible_rows(page) -> list[list[str]]:
    return page.eval_on_selector_all(
        "#samples-table tbody tr", "rows => rows.map(r => Array.from(r.cells, c => c.textContent))"
    )


def _counts(page) -> tuple[int, int]:
    text = page.text_content("#samples-count")
    matching, total = re.match(r"(\d+) of (\d+) embedded generations match", text).groups()
    return int(matching), int(total)


def test_report_in_headless_chromium(browser, tmp_path: Path) -> None:
    sweep = rich_sweep(tmp_path / "browser", 12, samples_per_trait=6, loss_steps=60)
    report = write_report(sweep)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    # offline: anything the page tried to fetch from elsewhere would show up here
    page.on(
        "request",
        lambda r: None if r.url.startswith(("file:", "data:", "about:")) else problems.append(f"fetched {r.url}"),
    )
    page.goto(report.as_uri())
    page.wait_for_load_state("load")

    # every chart hook: a drawn SVG with marks, nonzero size
    plots = page.eval_on_selector_all(
        "svg[data-plot]",
        """els => els.map(e => {
        const box = e.getBoundingClientRect();
        return [e.dataset.plot, box.width, box.height, e.querySelectorAll("circle,rect,polyline,line,path").length];
    })""",
    )
    assert {p[0] for p in plots} == ALL_PLOTS
    for name, width, height, marks in plots:
        assert width > 100 and height > 50 and marks > 3, (name, width, height, marks)

    # hovering a dose-response rung shows its tooltip (the <title> turned into data-tip)
    rung = page.locator('svg[data-plot="dose-response"] circle.rung').last
    rung.hover()
    tip = page.locator("#tip")
    assert tip.is_visible()
    assert "run(s), trials" in tip.text_content() and tip.text_content() == rung.get_attribute("data-tip")
    page.locator('svg[data-plot="pareto"] circle').first.hover()
    assert re.match(r"trial \d+", tip.text_content())

    # a legend entry hides its series and shows it again
    entry = page.locator('svg[data-plot="pareto"] .legend-item[data-series="pareto"]')
    front = page.locator('svg[data-plot="pareto"] g[data-series="pareto"]:not(.legend-item)')
    assert front.is_visible()
    entry.click()
    assert front.is_hidden() and entry.get_attribute("aria-pressed") == "false"
    entry.click()
    assert front.is_visible()

    # the samples table: text filter, then the verdict and condition selectors
    matching, total = _counts(page)
    assert matching == total > 50 and len(_visible_rows(page)) == 50  # paged
    page.fill("#samples-filter", "certainly")
    matching, _ = _counts(page)
    rows = _visible_rows(page)
    assert 0 < matching < total and rows
    assert all("certainly" in " ".join(r).lower() for r in rows)
    page.fill("#samples-filter", "")
    page.select_option("#samples-verdict", "zero")
    rows = _visible_rows(page)
    assert rows and all(r[5] == "0" for r in rows) and _counts(page)[0] < total
    page.select_option("#samples-verdict", "")
    page.select_option("#samples-condition", "drop")
    rows = _visible_rows(page)
    assert rows and all(r[1] == "drop" for r in rows)
    page.select_option("#samples-condition", "")
    assert _counts(page) == (total, total)

    # sorting the trials table by a header click puts the highest trial number first
    page.locator("table.sortable th").first.click()
    page.locator("table.sortable th").first.click()
    first = page.eval_on_selector("table.sortable tbody tr td", "td => td.textContent")
    assert first == str(len(list((sweep / "trials").glob("*/result.json"))) - 1)

    assert problems == []
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"screenshot: {SCREENSHOT}")
    page.close()
