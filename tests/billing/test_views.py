"""The customer's usage page and its CSV export."""

import csv
import io
import re
from datetime import date

import pytest
from PIL import Image

from billing.selectors import FIRST_DAY, LAST_DAY, ledger_sum
from billing.services import grant_credits
from doors.usage import PAGE_SIZE, bar_chart
from tests.ledger_history import backdate

PASSWORD = "correct-horse-battery"


@pytest.fixture
def customer(customer_client, history):
    """alice, logged in, on the account with ``history``."""
    return customer_client


def ledger_rows(html: str) -> list[str]:
    table = html.split('id="ledger-table"')[1].split("</table>")[0]
    return re.findall(r'<tr data-kind="(\w+)">', table)


def csv_rows(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.weights
def test_it_needs_a_login(client, history):
    response = client.get("/usage/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert client.get("/usage/export.csv").status_code == 302


def test_a_user_without_an_account_is_told_so(client, django_user_model):
    django_user_model.objects.create_user("loner", password=PASSWORD)
    client.login(username="loner", password=PASSWORD)
    assert client.get("/usage/").status_code == 403
    assert client.get("/usage/export.csv").status_code == 403


@pytest.mark.weights
def test_the_dashboard_links_to_it(customer):
    html = customer.get("/dashboard/").content.decode()
    assert 'href="/usage/"' in html


@pytest.mark.weights
def test_it_shows_every_row_of_the_period_and_totals_that_add_up(customer, history):
    response = customer.get("/usage/")
    html = response.content.decode()
    assert response.status_code == 200
    kinds = ledger_rows(html)
    assert sorted(kinds) == sorted(["grant", "charge", "charge", "refund", "charge", "adjust"])
    assert '<div class="metric" data-testid="usage-balance">850</div>' in html
    assert 'data-testid="opening-balance">0<' in html
    assert 'data-testid="period-net">+850<' in html
    assert 'data-testid="closing-balance">850<' in html
    assert "outsider" not in html


@pytest.mark.weights
def test_it_draws_the_last_thirty_days_as_inline_svg(customer, history):
    html = customer.get("/usage/").content.decode()
    images_chart = html.split('id="images-chart"')[1].split("</svg>")[0]
    assert images_chart.count('class="bar images_completed"') == 1
    assert images_chart.count('class="bar images_failed"') == 1
    assert "2 completed, 1 failed" in images_chart
    credits_chart = html.split('id="credits-chart"')[1].split("</svg>")[0]
    assert "50 credits spent" in credits_chart, "three charges less one refund"
    assert '<div class="metric" data-testid="usage-spent">50</div>' in html
    assert "<script" not in html.split("<main")[1].split("</main>")[0]


@pytest.mark.weights
def test_it_filters_by_date(customer, history):
    old = [row for row in history.account.ledger_entries.filter(kind="grant")]
    backdate(old, days=40)
    html = customer.get("/usage/?from=2000-01-01&to=2000-12-31").content.decode()
    assert "No ledger rows in this period." in html
    recent = customer.get("/usage/").content.decode()
    assert "grant" not in ledger_rows(recent)
    assert 'data-testid="opening-balance">1000<' in recent
    assert 'data-testid="closing-balance">850<' in recent


@pytest.mark.weights
def test_it_filters_by_api_key(customer, history):
    html = customer.get(f"/usage/?api_key={history.key.prefix}").content.decode()
    assert sorted(ledger_rows(html)) == ["charge", "charge", "refund"]
    assert 'data-testid="period-net">-25<' in html
    assert f'<option value="{history.key.prefix}" selected>' in html


@pytest.mark.weights
def test_a_bad_filter_is_a_400_with_a_plain_message(customer, history):
    response = customer.get("/usage/?from=yesterday")
    assert response.status_code == 400
    html = response.content.decode()
    assert "&#x27;from&#x27; must be a date as YYYY-MM-DD" in html
    assert len(ledger_rows(html)) == 6, "the default period is shown below the error"
    response = customer.get("/usage/?api_key=nope")
    assert response.status_code == 400
    assert "That API key does not exist in this account." in response.content.decode()


@pytest.mark.weights
@pytest.mark.parametrize(
    "params", ["to=0001-01-01", "from=9999-12-31&to=9999-12-31", "from=0001-01-01&to=0001-01-02"]
)
def test_a_date_at_the_ends_of_the_calendar_is_a_400_with_a_message(customer, history, params):
    response = customer.get(f"/usage/?{params}")
    assert response.status_code == 400
    html = response.content.decode()
    assert f"must be a day from {FIRST_DAY} to {LAST_DAY}" in html
    assert len(ledger_rows(html)) == 6, "the default period is shown below the error"


@pytest.mark.weights
@pytest.mark.parametrize(
    "params", ["to=0001-01-01", "from=9999-12-31&to=9999-12-31", "from=0001-01-01&to=0001-01-02"]
)
def test_the_csv_refuses_a_date_at_the_ends_of_the_calendar_before_streaming(
    customer, history, params
):
    response = customer.get(f"/usage/export.csv?{params}")
    assert response.status_code == 400
    assert not response.streaming
    assert f"must be a day from {FIRST_DAY} to {LAST_DAY}" in response.content.decode()


@pytest.mark.weights
def test_it_pages_the_rows(customer, history):
    for number in range(PAGE_SIZE):
        grant_credits(account=history.account, amount=1, note=f"grant {number}")
    first = customer.get("/usage/").content.decode()
    assert len(ledger_rows(first)) == PAGE_SIZE
    assert "Page 1 of 2 (56 rows)" in first
    second = customer.get("/usage/?page=2").content.decode()
    assert len(ledger_rows(second)) == 6


@pytest.mark.weights
def test_the_csv_has_the_same_rows_as_the_page_and_adds_up_to_the_balance(customer, history):
    response = customer.get("/usage/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="usage-')
    rows = csv_rows(response)
    assert [row["kind"] for row in rows] == ledger_rows(customer.get("/usage/").content.decode())
    assert sum(int(row["amount"]) for row in rows) == 850 == ledger_sum(account=history.account)
    assert int(rows[0]["balance_after"]) == 850


@pytest.mark.weights
def test_the_csv_follows_the_filter(customer, history):
    rows = csv_rows(customer.get(f"/usage/export.csv?api_key={history.other_key.prefix}"))
    assert [(row["kind"], row["amount"], row["api_key"]) for row in rows] == [
        ("charge", "-25", history.other_key.prefix)
    ]
    assert rows[0]["job_status"] == "completed"
    response = customer.get("/usage/export.csv?from=2024-02-30")
    assert response.status_code == 400


@pytest.mark.weights
def test_the_csv_quotes_notes_a_spreadsheet_would_run(customer, history):
    rows = csv_rows(customer.get("/usage/export.csv"))
    (adjustment,) = [row for row in rows if row["kind"] == "adjust"]
    assert adjustment["note"] == "'=HYPERLINK(1) correction"
    assert adjustment["amount"] == "-100"


def test_the_tallest_bar_fills_the_chart_and_others_scale():
    days = [
        {"date": date(2025, 1, day), "images_completed": n} for day, n in [(1, 0), (2, 5), (3, 10)]
    ]
    chart = bar_chart(days=days, series=[("images_completed", "Completed", "#000")])
    heights = [bar["height"] for bar in chart["bars"]]
    plot_height = chart["baseline"] - 8  # the top margin
    assert heights == [plot_height / 2, plot_height]
    assert [tick["value"] for tick in chart["ticks"]] == [0, 5, 10]
    assert chart["totals"] == {"images_completed": 15}


@pytest.mark.parametrize("last_day", [date(2025, 1, 31), date(2025, 3, 1), date(2024, 12, 2)])
def test_day_labels_are_a_week_apart_ending_on_the_last_day(last_day):
    """Month ends included: never two labels a day or two apart (they overlapped)."""
    from datetime import timedelta

    days = [
        {"date": last_day - timedelta(days=n), "images_completed": n % 3} for n in range(29, -1, -1)
    ]
    chart = bar_chart(days=days, series=[("images_completed", "Completed", "#000")])
    lefts = [label["left"] for label in chart["labels"]]
    assert chart["labels"][-1]["text"] == f"{last_day:%b} {last_day.day}"
    assert lefts == sorted(lefts)
    gaps = {round(b - a, 2) for a, b in zip(lefts, lefts[1:], strict=False)}
    assert gaps == {round(7 / 30 * 100, 2)}, gaps


@pytest.mark.weights
def test_it_lists_the_periods_batches_with_their_items_and_credits(customer, history):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from removal import batch_submissions, batches
    from removal.services import fail_job
    from removal.submissions import Fields
    from tests.images import encode, solid_png

    gif = encode(Image.new("RGB", (8, 8)), "GIF")
    uploads = [SimpleUploadedFile(f"{n}.png", solid_png()) for n in range(3)]
    uploads.append(SimpleUploadedFile("x.gif", gif))
    request = batch_submissions.build_web_batch_request(
        fields=Fields({"model": "u2netp"}, {}), uploads=uploads, idempotency_key=None
    )
    batch = batches.submit_batch(account=history.account, request=request)
    first, second, third = batch.jobs.order_by("batch_index")
    for job in (first, second):
        assert job.mark_processing()
    assert first.mark_completed(output_size=1, elapsed_seconds=0.1, expires_at=first.expires_at)
    assert fail_job(job=second, error="The image could not be processed")

    html = customer.get("/usage/").content.decode()
    assert 'data-testid="batch-count">1<' in html
    assert 'data-testid="batch-items">4<' in html
    assert 'data-testid="batch-refused">1<' in html
    # Three charged, one refunded.
    assert 'data-testid="batch-credits">50<' in html
    row = html.split(f'data-batch="{batch.id}"')[1].split("</tr>")[0]
    assert re.findall(r'data-label="(?:Completed|Failed \(refunded\)|Credits)">(\d+)<', row) == [
        "1",
        "1",
        "50",
    ]
    assert "web page" in row and "Running" in row
    # Another key's view of the period has no batch.
    html = customer.get(f"/usage/?api_key={history.key.prefix}").content.decode()
    assert 'data-testid="batch-count">0<' in html
