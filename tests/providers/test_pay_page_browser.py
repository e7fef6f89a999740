"""The pay-at-table page in a real headless browser (Debian's Chromium driven by
Playwright, no browser download): the customer sees the bill, picks a tip, pays by bank
on the sandbox bank's consent page, and the terminal sees the payment.

Skipped with a reason where Chromium or Playwright is absent; required under ``CI=true``.
``FYNLO_SCREENSHOT_DIR`` keeps the screenshots (default: the test's temporary folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import png

from tests.providers.conftest import PayWorld, missing, wait_until
from tests.providers.test_pay_at_table import order_with_lines, session

CHROMIUM = "/usr/bin/chromium"


def _browser(p: Any) -> Any:
    return p.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
    )


def test_the_customer_tips_and_pays_by_bank_in_a_browser(
    pay_world: PayWorld, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        missing(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (it is in the dev group)")
    shots = Path(os.environ.get("FYNLO_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    terminal, order_id = order_with_lines(pay_world)
    qr = terminal.transport.post("/v1/plugins/providers/qr", {"order_id": order_id})

    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport={"width": 420, "height": 860})
            page.goto(qr["pay_url"])
            assert page.locator("#lines").inner_text().count("Fish pie") == 1
            assert page.locator("#total").inner_text() == "GBP 32.50"
            page.get_by_role("button", name="10%").click()
            assert page.locator("#total").inner_text() == "GBP 35.75"  # 325 tip, half-up
            assert page.locator("#apple").is_disabled()  # no Apple Pay in this browser
            assert page.locator("#apple-note").is_visible()
            page.screenshot(path=str(shots / "pay-page.png"), full_page=True)
            page.get_by_role("button", name="Pay by bank").click()
            page.wait_for_url("**/consent/**")
            assert "GBP 35.75" in page.content()
            page.screenshot(path=str(shots / "bank-consent.png"))
            page.get_by_role("button", name="Approve").click()
            page.wait_for_selector("#status")
            assert "executed" in page.locator("#status").inner_text()
            # Back on the pay page, the status is live.
            page.goto(qr["pay_url"])
            # (A locator, not wait_for_function: the page's policy forbids eval, which
            # that polls with.)
            page.locator("#status:has-text('Paid')").wait_for(timeout=20_000)
            # Paid: the amount paid with its tip, and no button left to pay again.
            page.locator("#total-label:has-text('Paid')").wait_for(timeout=5_000)
            assert page.locator("#total").inner_text() == "GBP 35.75"
            assert page.locator("#bank").is_hidden()
            assert page.locator(".tip").first.is_hidden()
            page.screenshot(path=str(shots / "pay-page-paid.png"), full_page=True)
        finally:
            browser.close()

    paid = wait_until(
        lambda: (
            (s := session(terminal, qr["attempt_id"])) is not None
            and s.fields["status"] == "succeeded"
            and s
        ),
        what="the terminal seeing the payment",
    )
    assert paid.fields["received"] == 3575
    width, height, _, _ = png.Reader(filename=str(shots / "pay-page.png")).read()
    assert width >= 400 and height >= 400
