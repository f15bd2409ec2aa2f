"""The usage page in a real headless Chromium: the chart, the filters and
the CSV download, against the live server."""

import csv
import io
import re
from pathlib import Path

import pytest

from accounts.services import create_api_key
from billing.selectors import ledger_sum
from billing.services import adjust_credits
from tests.e2e.conftest import log_in
from tests.ledger_history import run_job

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture
def usage(customer):
    """alice's account: key "ci" ran two jobs (one failed and refunded), the
    web page one, and an administrator took 100 credits back. 850 left."""
    ci, _ = create_api_key(account=customer, name="ci")
    run_job(customer, api_key=ci)
    run_job(customer, api_key=ci, fail=True)
    run_job(customer)
    adjust_credits(account=customer, amount=-100, note="Duplicate grant")
    customer.refresh_from_db()
    return ci


def table_kinds(page) -> list[str]:
    return page.locator("#ledger-table tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.kind)"
    )


def test_a_customer_sees_the_chart_filters_the_ledger_and_downloads_the_csv(
    live_server, customer, usage, page
):
    log_in(page, live_server, "alice", path="/dashboard/")
    page.get_by_role("link", name="Usage").click()
    page.wait_for_url(f"{live_server.url}/usage/")
    assert page.get_by_test_id("usage-balance").inner_text() == "850"

    # The chart: inline SVG, one stacked bar today (2 completed, 1 failed).
    chart = page.locator("svg#images-chart")
    assert chart.is_visible()
    assert chart.locator("rect.bar.images_completed").count() == 1
    assert chart.locator("rect.bar.images_failed").count() == 1
    completed_bar = chart.locator("rect.bar.images_completed").bounding_box()
    failed_bar = chart.locator("rect.bar.images_failed").bounding_box()
    assert completed_bar["height"] == pytest.approx(2 * failed_bar["height"], rel=0.05)
    assert "2 completed, 1 failed" in chart.locator("rect.bar title").first.text_content()
    assert page.locator("svg#credits-chart rect.bar").count() == 1
    assert page.get_by_test_id("usage-spent").inner_text() == "50"

    assert sorted(table_kinds(page)) == sorted(
        ["grant", "charge", "charge", "refund", "charge", "adjust"]
    )
    assert page.get_by_test_id("closing-balance").inner_text() == "850"

    # One key's rows.
    page.get_by_label("API key").select_option(usage.prefix)
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**api_key={usage.prefix}**")
    assert sorted(table_kinds(page)) == ["charge", "charge", "refund"]

    # Its CSV holds the same rows.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    download = download_info.value
    assert download.suggested_filename.startswith("usage-")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert [row["kind"] for row in rows] == table_kinds(page)
    assert {row["api_key"] for row in rows} == {usage.prefix}
    assert sorted(int(row["amount"]) for row in rows) == [-25, -25, 25]

    # Every row, as a file: they add up to the balance.
    page.get_by_label("API key").select_option("")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"api_key=$"))
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert len(rows) == 6
    assert sum(int(row["amount"]) for row in rows) == 850 == ledger_sum(account=customer)

    # A period with nothing in it.
    page.get_by_label("From").fill("2001-01-01")
    page.get_by_label("To").fill("2001-01-31")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**from=2001-01-01**")
    assert page.get_by_text("No ledger rows in this period.").is_visible()
    assert page.get_by_test_id("opening-balance").inner_text() == "0"

    # A phone-width screen: the charts shrink, nothing is wider than the screen.
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{live_server.url}/usage/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.locator("svg#images-chart").bounding_box()["width"] <= 375
